"""Request bodies checked against the official SDKs' own request types.

Why: the fake LLM server answers whatever it is sent, so an adapter could send a key no
real API defines (or the right key in the wrong shape) and every test would still pass;
the live API then answers 400, or worse, drops the key without a word. Each body is
judged by the type the vendor's own SDK builds requests from:

- openai-completions: ``openai.types.chat.completion_create_params``
  ``CompletionCreateParamsNonStreaming`` / ``CompletionCreateParamsStreaming``
- anthropic-messages: ``anthropic.types.message_create_params``
  ``MessageCreateParamsNonStreaming`` / ``MessageCreateParamsStreaming``
- google-generative-ai: the REST body's top-level keys (those the SDK's own Gemini API
  converter sends); each one's value with its ``google.genai.types`` pydantic model
  (``Content``, ``Tool``, ``ToolConfig``, ``GenerationConfig``, ``SafetySetting``), from the
  JSON text so bytes are base64 as on the wire; then through the SDK's Gemini API
  converter, which refuses the fields only Vertex AI defines. Two rules the models leave
  loose are held as the API holds them: a Part carries exactly one kind of data, and an
  enum is its exact name (the SDK takes any case, and unknown names with a warning)
- the URL, when given: the endpoint, and for Gemini the model path, the method and
  ``alt=sse`` on a stream
- ollama: ``ollama._types.ChatRequest`` with its nested ``Message``, ``Tool``, ``Options``

The two Stainless SDKs (openai, anthropic) describe requests as TypedDicts, which pydantic
will not hold to "no extra keys" (``TypeAdapter`` refuses a ``config`` for a TypedDict it
does not own), so :func:`_check` walks their annotations itself. The ollama models ignore
extra keys, so their fields are walked before pydantic judges the shapes.

    check_request("anthropic-messages", body, path="/v1/messages", stream=True)
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import json
import re
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from typing import Any, Literal, NoReturn, NotRequired, Required, Union, get_args, get_origin
from urllib.parse import parse_qs, urlsplit

import pydantic
from pydantic.alias_generators import to_camel
from typing_extensions import is_typeddict

OPENAI = "openai-completions"
ANTHROPIC = "anthropic-messages"
GOOGLE = "google-generative-ai"
OLLAMA = "ollama"

SDK_VERSIONS: dict[str, str] = {
    sdk: version(sdk) for sdk in ("openai", "anthropic", "google-genai", "ollama")
}
SDK_OF: dict[str, str] = {
    OPENAI: "openai",
    ANTHROPIC: "anthropic",
    GOOGLE: "google-genai",
    OLLAMA: "ollama",
}
ENDPOINTS: dict[str, str] = {
    OPENAI: "/chat/completions",
    ANTHROPIC: "/v1/messages",
    OLLAMA: "/api/chat",
}

Path = tuple[str | int, ...]


class WireError(AssertionError):
    """A request body (or URL) the official SDK's types refuse: ``where`` is the JSON path
    of the offending key or value, ``judge`` the SDK (and version) and type that refused."""

    def __init__(self, api: str, judge: str, where: str, problem: str) -> None:
        self.api, self.judge, self.where, self.problem = api, judge, where, problem
        super().__init__(f"{where}: {problem} ({api}, judged by {judge})")


def check_request(api: str, body: Any, *, path: str = "", stream: bool | None = None) -> None:
    """Raise :class:`WireError` unless ``body`` (the decoded JSON an adapter sent to ``api``)
    is a request the official SDK's types accept. ``path``: the URL path (and query) it went
    to, checked when given; ``stream``: whether the request streams, when known apart from
    the body (Gemini says it in the URL, Ollama streams unless told not to)."""
    if api not in _CHECKERS:
        raise ValueError(f"unknown api {api!r}: one of {', '.join(_CHECKERS)}")
    _CHECKERS[api](body, path, stream)


def format_path(path: Path) -> str:
    """``("messages", 2, "content")`` -> ``messages[2].content``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "<body>"


def _kind(value: Any) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


# -- a strict walker over TypedDict annotations (openai, anthropic) ------------------------


@dataclass(frozen=True)
class _Miss:
    """Why a value does not fit a type. ``score`` ranks the alternatives of a union: the
    one that got furthest is the one the sender meant, so its complaint is reported."""

    path: Path
    problem: str
    score: float
    choices: tuple[Any, ...] = ()  # a Literal's, merged across a union's alternatives
    value: Any = None  # what was sent instead of one of ``choices``


@dataclass(frozen=True)
class _Field:
    hint: Any  # the type itself: Required/NotRequired/Annotated stripped
    required: bool
    discriminates: bool  # a Literal: it says which alternative of a union this dict is


_SEQUENCES = (list, collections.abc.Sequence, collections.abc.Iterable, collections.abc.Collection)
_MAPPINGS = (dict, collections.abc.Mapping)
_SCALARS: dict[type, tuple[str, Callable[[Any], bool]]] = {
    str: ("a string", lambda v: isinstance(v, str)),
    bool: ("a boolean", lambda v: isinstance(v, bool)),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    # JSON has one number type: 1 is a fine float
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
}


def _unwrap(hint: Any) -> Any:
    """Strip Required/NotRequired/Annotated down to the type itself."""
    while get_origin(hint) in (Required, NotRequired, typing.Annotated):
        hint = get_args(hint)[0]
    return hint


def _wire_key(name: str, hint: Any) -> str:
    """The key on the wire: a Stainless ``PropertyInfo(alias=...)`` renames it."""
    while get_origin(hint) in (Required, NotRequired, typing.Annotated):
        if get_origin(hint) is typing.Annotated:
            for meta in hint.__metadata__:
                alias = getattr(meta, "alias", None)
                if isinstance(alias, str):
                    return alias
        hint = get_args(hint)[0]
    return name


def _totals(td: Any) -> dict[str, bool]:
    """Each key's ``total`` from the class that declares it. ``__required_keys__`` cannot be
    trusted: under ``from __future__ import annotations`` (as the SDKs are written) the
    metaclass sees ``Required[...]`` as a string and files every key under the class total."""
    own = dict(td.__annotations__)
    out: dict[str, bool] = {}
    for base in getattr(td, "__orig_bases__", ()):
        if is_typeddict(base):
            inherited = _totals(base)
            for key, annotation in base.__annotations__.items():
                if own.get(key) is annotation:  # not redeclared here
                    out[key] = inherited[key]
    return {key: out.get(key, bool(td.__total__)) for key in own}


@cache
def _fields(td: Any) -> dict[str, _Field]:
    """Wire key -> field of a TypedDict, forward references resolved in their own module."""
    totals = _totals(td)
    out: dict[str, _Field] = {}
    for name, hint in typing.get_type_hints(td, include_extras=True).items():
        marked = hint
        while get_origin(marked) is typing.Annotated:
            marked = get_args(marked)[0]
        required = {Required: True, NotRequired: False}.get(get_origin(marked), totals[name])
        inner = _unwrap(hint)
        out[_wire_key(name, hint)] = _Field(inner, required, get_origin(inner) is Literal)
    return out


def _extra_allowed(td: Any) -> bool:
    """``set_pydantic_config(X, {"extra": "allow"})``: the SDK's mark for an open dict."""
    config = getattr(td, "__pydantic_config__", None) or {}
    return config.get("extra") == "allow"


def _check(hint: Any, value: Any, path: Path) -> _Miss | None:
    """None when ``value`` (decoded JSON) fits ``hint``, else the furthest miss."""
    hint = _unwrap(hint)
    origin = get_origin(hint)
    if hint is Any or hint is object:
        return None
    if hint is None or hint is type(None):
        return None if value is None else _Miss(path, f"expected null, got {_kind(value)}", 0)
    if origin is Union or origin is types.UnionType:
        misses = []
        for alternative in get_args(hint):
            miss = _check(alternative, value, path)
            if miss is None:
                return None
            misses.append(miss)
        return _best(misses)
    if origin is Literal:
        choices = get_args(hint)
        if any(value == c and type(value) is type(c) for c in choices):
            return None
        return _Miss(path, _not_one_of(value, choices), len(path), choices, value)
    if is_typeddict(hint):
        return _check_typeddict(hint, value, path)
    if _is_model(hint):
        # a response block the SDK lets Python callers hand back (anthropic's TextBlock …):
        # it travels as its *Param shape, which the same union also holds
        return _Miss(path, f"{hint.__name__} is an SDK object, not a wire shape", -1)
    if origin in _SEQUENCES or hint in _SEQUENCES:
        if not isinstance(value, list):
            return _Miss(path, f"expected an array, got {_kind(value)}", len(path))
        (item,) = get_args(hint) or (Any,)
        for i, element in enumerate(value):
            if miss := _check(item, element, (*path, i)):
                return miss
        return None
    if origin in _MAPPINGS or hint in _MAPPINGS:
        if not isinstance(value, dict):
            return _Miss(path, f"expected an object, got {_kind(value)}", len(path))
        _, item = get_args(hint) or (str, Any)
        for key, element in value.items():
            if miss := _check(item, element, (*path, key)):
                return miss
        return None
    if hint in _SCALARS:
        want, fits = _SCALARS[hint]
        return (
            None if fits(value) else _Miss(path, f"expected {want}, got {_kind(value)}", len(path))
        )
    # a construct this walker does not know must fail loudly, not pass unread
    raise TypeError(f"tests/wire.py cannot check {hint!r} (at {format_path(path)}): teach _check")


def _not_one_of(value: Any, choices: tuple[Any, ...]) -> str:
    shown = ", ".join(map(repr, choices[:8])) + (", …" if len(choices) > 8 else "")
    return f"{value!r} is not one of {shown}"


def _best(misses: list[_Miss]) -> _Miss:
    """The furthest miss (the first of equals); when every alternative stopped at the same
    Literal (``role``: "usr"), one complaint that lists all their choices."""
    best = max(misses, key=lambda m: m.score)
    tied = [m for m in misses if m.score == best.score and m.path == best.path]
    if len(tied) > 1 and all(m.choices for m in tied):
        choices = tuple(dict.fromkeys(c for m in tied for c in m.choices))
        return _Miss(best.path, _not_one_of(best.value, choices), best.score, choices, best.value)
    return best


def _check_typeddict(td: Any, value: Any, path: Path) -> _Miss | None:
    """Every key declared, every required key present, every value of its type. A
    discriminating Literal (``role``, ``type``) is judged first, so a union reports the
    alternative the sender meant."""
    if not isinstance(value, dict):
        return _Miss(path, f"expected an object ({td.__name__}), got {_kind(value)}", len(path))
    fields = _fields(td)
    depth = len(path)
    for key, field in fields.items():
        if field.discriminates and key in value:
            miss = _check(field.hint, value[key], (*path, key))
            if miss:  # below any complaint from inside the right alternative
                return _Miss(miss.path, miss.problem, depth + 0.5, miss.choices, miss.value)
    if not _extra_allowed(td):
        for key in value:
            if key not in fields:
                return _Miss((*path, key), f"not a field of {td.__name__}", depth + 1)
    for key, field in fields.items():
        if field.required and key not in value:
            return _Miss((*path, key), f"missing (required by {td.__name__})", depth + 1)
    for key, element in value.items():
        if key in fields and (miss := _check(fields[key].hint, element, (*path, key))):
            return miss
    return None


def _check_typed(api: str, td: Any, body: Any) -> None:
    miss = _check(td, body, ())
    if miss is not None:
        sdk = SDK_OF[api]
        judge = f"{sdk} {SDK_VERSIONS[sdk]} {td.__name__}"
        raise WireError(api, judge, format_path(miss.path), miss.problem)


def _check_endpoint(api: str, path: str) -> None:
    if path and not urlsplit(path).path.endswith(ENDPOINTS[api]):
        problem = f"{path!r} is not a {api} chat endpoint (…{ENDPOINTS[api]})"
        raise WireError(api, "the API's URL scheme", "URL", problem)


def _streams(body: Any, stream: bool | None) -> bool:
    return stream if stream is not None else isinstance(body, dict) and body.get("stream") is True


# body fields OpenAI-compatible servers define beyond OpenAI's own, as their references
# give them; an adapter sends one only where config asks ([providers] no_think_body)
OPENAI_EXTENSIONS: dict[str, Callable[[Any], bool]] = {
    # DeepSeek's thinking switch (api-docs.deepseek.com/guides/thinking_mode)
    "thinking": lambda v: (
        isinstance(v, dict) and set(v) == {"type"} and v["type"] in ("enabled", "disabled")
    ),
}


def _check_openai(body: Any, path: str, stream: bool | None) -> None:
    from openai.types.chat import completion_create_params as params

    _check_endpoint(OPENAI, path)
    if isinstance(body, dict):
        for key, valid in OPENAI_EXTENSIONS.items():
            if key in body and not valid(body[key]):
                raise WireError(OPENAI, "the server's reference", key, "not its documented shape")
        body = {k: v for k, v in body.items() if k not in OPENAI_EXTENSIONS}
    streaming = _streams(body, stream)
    td = (
        params.CompletionCreateParamsStreaming
        if streaming
        else params.CompletionCreateParamsNonStreaming
    )
    _check_typed(OPENAI, td, body)


def _check_anthropic(body: Any, path: str, stream: bool | None) -> None:
    from anthropic.types import message_create_params as params

    _check_endpoint(ANTHROPIC, path)
    streaming = _streams(body, stream)
    td = (
        params.MessageCreateParamsStreaming if streaming else params.MessageCreateParamsNonStreaming
    )
    _check_typed(ANTHROPIC, td, body)


# -- pydantic models (google-genai, ollama) ------------------------------------------------


def _raise_pydantic(
    api: str, judge: str, prefix: Path, error: pydantic.ValidationError
) -> NoReturn:
    """The first complaint, its path in wire keys, in the words the walker uses."""
    first = error.errors()[0]
    where = format_path((*prefix, *first["loc"]))
    problem = {"extra_forbidden": "not a field", "missing": "missing"}.get(
        first["type"], first["msg"]
    )
    more = error.error_count() - 1
    raise WireError(api, judge, where, problem + (f" (and {more} more)" if more else ""))


@dataclass(frozen=True)
class _GeminiKey:
    """A top-level key of the REST body: the SDK model that judges it, and the SDK's Gemini
    API converter that refuses what only Vertex AI defines (None: no converter)."""

    adapter: pydantic.TypeAdapter[Any]
    judge: str
    converter: Callable[[Any], Any] | None
    many: bool


# the data of a Part is a oneof in the API: exactly one of these (the SDK's Part docstring:
# "Exactly one field within a Part should be set"; thought, thoughtSignature and the
# metadata ride beside it)
_PART_DATA = (
    "text",
    "inline_data",
    "file_data",
    "function_call",
    "function_response",
    "executable_code",
    "code_execution_result",
    "tool_call",
    "tool_response",
)


@cache
def _gemini_keys() -> dict[str, _GeminiKey]:
    """The keys the SDK's own ``_GenerateContentParameters_to_mldev`` and
    ``_GenerateContentConfig_to_mldev`` put in a generateContent body."""
    from google.genai import models as converters
    from google.genai import types as genai

    config = genai.GenerateContentConfig.model_fields

    def key(tp: Any, name: str, converter: Callable[[Any], Any] | None = None) -> _GeminiKey:
        many = get_origin(tp) is list
        return _GeminiKey(pydantic.TypeAdapter(tp), name, converter, many)

    def generation(value: Any) -> Any:
        # GenerationConfig has no converter of its own; GenerateContentConfig's holds the
        # same fields and refuses the Vertex-only ones (routingConfig, audioTimestamp, …)
        shared = {k: getattr(value, k) for k in value.model_fields_set if k in config}
        no_client: Any = None  # read only for cachedContent, which is not in here
        return converters._GenerateContentConfig_to_mldev(
            no_client, genai.GenerateContentConfig.model_validate(shared), {}
        )

    return {
        "contents": key(list[genai.Content], "Content", converters._Content_to_mldev),
        "systemInstruction": key(genai.Content, "Content", converters._Content_to_mldev),
        "tools": key(list[genai.Tool], "Tool", converters._Tool_to_mldev),
        "toolConfig": key(genai.ToolConfig, "ToolConfig", converters._ToolConfig_to_mldev),
        "generationConfig": key(genai.GenerationConfig, "GenerationConfig", generation),
        "safetySettings": key(
            list[genai.SafetySetting], "SafetySetting", converters._SafetySetting_to_mldev
        ),
        "cachedContent": key(str, "str"),
        # sent beside generationConfig by the converter, typed by GenerateContentConfig
        "serviceTier": key(config["service_tier"].annotation, "GenerateContentConfig"),
        "store": key(config["store"].annotation, "GenerateContentConfig"),
        "labels": key(config["labels"].annotation, "GenerateContentConfig"),
    }


def _check_gemini_path(path: str, stream: bool | None) -> None:
    """``/v1beta/models/{model}:generateContent``, or ``:streamGenerateContent?alt=sse``
    (without alt=sse the stream is one JSON array, not server-sent events)."""
    url = urlsplit(path)
    resource, _, method = url.path.rpartition(":")
    judge = "the Gemini API's URL scheme"
    if not re.fullmatch(r"(/v1(alpha|beta)?)?/(models|tunedModels)/[^/]+", resource):
        raise WireError(GOOGLE, judge, "URL", f"{path!r} does not name models/{{model}}")
    if method not in ("generateContent", "streamGenerateContent"):
        raise WireError(GOOGLE, judge, "URL", f"{method!r} is not generateContent")
    streaming = method == "streamGenerateContent"
    if stream is not None and stream != streaming:
        raise WireError(GOOGLE, judge, "URL", f"{method} for a stream={stream} request")
    alt = parse_qs(url.query).get("alt")
    if streaming and alt != ["sse"]:
        raise WireError(GOOGLE, judge, "URL", f"streamGenerateContent without alt=sse: {path!r}")


def _check_google(body: Any, path: str, stream: bool | None) -> None:
    if path:
        _check_gemini_path(path, stream)
    sdk = f"google-genai {SDK_VERSIONS['google-genai']}"
    if not isinstance(body, dict):
        raise WireError(GOOGLE, sdk, "<body>", f"expected an object, got {_kind(body)}")
    keys = _gemini_keys()
    for name in body:
        if to_camel(name) not in keys:  # proto JSON takes the snake_case names too
            problem = f"not a field of GenerateContentRequest (one of {', '.join(keys)})"
            raise WireError(
                GOOGLE, f"{sdk} models._GenerateContentParameters_to_mldev", name, problem
            )
    if "contents" not in body:
        raise WireError(GOOGLE, f"{sdk} GenerateContentRequest", "contents", "missing")
    for name, value in body.items():
        key = keys[to_camel(name)]
        judge = f"{sdk} {key.judge}"
        try:  # from the JSON text: bytes (thoughtSignature) are base64 there, as on the wire
            with warnings.catch_warnings():  # an unknown enum value: _exact_enums says why
                warnings.simplefilter("ignore", UserWarning)
                parsed = key.adapter.validate_json(json.dumps(value), strict=True)
        except pydantic.ValidationError as error:
            _raise_pydantic(GOOGLE, judge, (name,), error)
        _exact_enums(parsed, value, (name,), judge)
        items = parsed if key.many else [parsed]
        for i, item in enumerate(items):
            where: Path = (name, i) if key.many else (name,)
            if key.judge == "Content":
                _check_parts(item, where, judge)
            if key.converter is None:
                continue
            try:
                key.converter(item)
            except ValueError as error:  # "… is not supported in Gemini API"
                raise WireError(
                    GOOGLE, f"{sdk} Gemini API converter", format_path(where), str(error)
                ) from None


def _exact_enums(parsed: Any, raw: Any, path: Path, judge: str) -> None:
    """The SDK's enums take any case and even unknown values (with a warning), for forward
    compatibility; the API reads an enum's exact name, so "auto" or "REQUIRED" is refused."""
    if isinstance(parsed, enum.Enum):
        members = type(parsed).__members__
        if parsed.name not in members or raw != parsed.value:
            choices = ", ".join(repr(m.value) for m in members.values())
            problem = f"{raw!r} is not one of {choices} (exactly: case matters on the wire)"
            raise WireError(GOOGLE, f"{judge} {type(parsed).__name__}", format_path(path), problem)
    elif isinstance(parsed, pydantic.BaseModel) and isinstance(raw, dict):
        for name, field in type(parsed).model_fields.items():
            for key in (field.alias or name, name):
                if key in raw:
                    _exact_enums(getattr(parsed, name), raw[key], (*path, key), judge)
                    break
    elif isinstance(parsed, list) and isinstance(raw, list):
        for i, (item, raw_item) in enumerate(zip(parsed, raw, strict=False)):
            _exact_enums(item, raw_item, (*path, i), judge)
    elif isinstance(parsed, dict) and isinstance(raw, dict):
        for key, item in parsed.items():
            if key in raw:
                _exact_enums(item, raw[key], (*path, key), judge)


def _check_parts(content: Any, where: Path, judge: str) -> None:
    one_of = ", ".join(map(to_camel, _PART_DATA))
    for i, part in enumerate(content.parts or []):
        data = [to_camel(name) for name in _PART_DATA if getattr(part, name) is not None]
        if len(data) != 1:
            problem = f"a Part carries exactly one of {one_of}; this has {data or 'none'}"
            raise WireError(GOOGLE, f"{judge} (Part)", format_path((*where, "parts", i)), problem)


def _model_keys(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """Wire key -> annotation: the alias, and the name too where the model allows it."""
    by_name = model.model_config.get("populate_by_name", False)
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.alias:
            out[field.alias] = field.annotation
        if by_name or not field.alias:
            out[name] = field.annotation
    return out


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


class _OllamaWalk:
    """Walk an Ollama body against the SDK's models: unknown keys are errors (the models
    would drop them, and so does Ollama's server: silently), then each model judges its
    own node, deepest first, so the complaint names the innermost path."""

    def __init__(self, judge: str) -> None:
        self.judge = judge

    def fail(self, path: Path, problem: str, judge: str = "") -> WireError:
        return WireError(OLLAMA, judge or self.judge, format_path(path), problem)

    def model(self, model: type[pydantic.BaseModel], value: Any, path: Path) -> Any:
        """Check one node; returns it in the form the model validates (see ``image``)."""
        from ollama._types import Image

        if model is Image:
            return self.image(value, path)
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object ({model.__name__}), got {_kind(value)}")
        keys = _model_keys(model)
        form: dict[str, Any] = {}
        if model is _property_model():
            value = self.server_property(value, path)
        for key, element in value.items():
            if key not in keys:
                raise self.fail((*path, key), f"not a field of {model.__name__}")
            form[key] = self.hint(keys[key], element, (*path, key))
        try:
            model.model_validate(form, strict=True)
        except pydantic.ValidationError as error:
            _raise_pydantic(OLLAMA, f"{self.judge} {model.__name__}", path, error)
        return form

    def hint(self, hint: Any, value: Any, path: Path) -> Any:
        """Find the models inside an annotation; other types are left to pydantic."""
        hint = _unwrap(hint)
        origin = get_origin(hint)
        if _is_model(hint):
            return self.model(hint, value, path)
        if origin is Union or origin is types.UnionType:
            # the SDK turns a Mapping-or-Message into a Message before sending: judge by it
            models = [a for a in get_args(hint) if _is_model(a)]
            others = [a for a in get_args(hint) if a is not type(None) and not _is_model(a)]
            if models and isinstance(value, dict):
                return self.model(models[0], value, path)
            if len(others) == 1 and not models:
                return self.hint(others[0], value, path)
        elif origin in _SEQUENCES and isinstance(value, list):
            (item,) = get_args(hint) or (Any,)
            return [self.hint(item, element, (*path, i)) for i, element in enumerate(value)]
        elif origin in _MAPPINGS and isinstance(value, dict):
            _, item = get_args(hint) or (str, Any)
            return {k: self.hint(item, element, (*path, k)) for k, element in value.items()}
        return value

    def server_property(self, value: dict[str, Any], path: Path) -> dict[str, Any]:
        """The keys Ollama's server reads of a tool property beyond the client's Property
        (api/types.go ToolProperty: anyOf, nested properties, required), checked here; the
        rest is left to the client's model."""
        prop = _property_model()
        rest = {k: v for k, v in value.items() if k not in ("anyOf", "properties", "required")}
        if "anyOf" in value:
            alternatives = value["anyOf"]
            if not isinstance(alternatives, list):
                raise self.fail((*path, "anyOf"), f"expected an array, got {_kind(alternatives)}")
            for i, alt in enumerate(alternatives):
                self.model(prop, alt, (*path, "anyOf", i))
        if "properties" in value:
            nested = value["properties"]
            if not isinstance(nested, dict):
                raise self.fail((*path, "properties"), f"expected an object, got {_kind(nested)}")
            for name, sub in nested.items():
                self.model(prop, sub, (*path, "properties", name))
        required = value.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise self.fail((*path, "required"), "expected an array of strings")
        return rest

    def image(self, value: Any, path: Path) -> dict[str, Any]:
        """On the wire an image is its base64 text; the model holds it as ``{"value": …}``."""
        from ollama._types import Image

        if not isinstance(value, str):
            raise self.fail(path, f"expected base64 image data (a string), got {_kind(value)}")
        try:
            Image(value=value).model_dump()  # its serializer is what checks the base64
        except ValueError as error:
            raise self.fail(path, str(error), f"{self.judge} Image") from None
        return {"value": value}


def _property_model() -> type[pydantic.BaseModel]:
    from ollama._types import Tool

    prop: type[pydantic.BaseModel] = Tool.Function.Parameters.Property
    return prop


def _check_ollama(body: Any, path: str, stream: bool | None) -> None:
    from ollama._types import ChatRequest

    _check_endpoint(OLLAMA, path)
    walk = _OllamaWalk(f"ollama {SDK_VERSIONS['ollama']}")
    walk.model(ChatRequest, body, ())
    if stream is not None and body.get("stream", True) is not stream:
        problem = f"{body.get('stream')!r} for a stream={stream} request (absent means true)"
        raise WireError(OLLAMA, walk.judge, "stream", problem)


_CHECKERS: dict[str, Callable[[Any, str, bool | None], None]] = {
    OPENAI: _check_openai,
    ANTHROPIC: _check_anthropic,
    GOOGLE: _check_google,
    OLLAMA: _check_ollama,
}


_WARM_BODIES: dict[str, dict[str, Any]] = {
    OPENAI: {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    ANTHROPIC: {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
    GOOGLE: {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    OLLAMA: {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
}


@functools.cache
def warm() -> None:
    """Import the SDKs and resolve their types once (about 2.5 s, most of it anthropic's),
    before a server takes requests: judged on a request's path, the first request of each
    format would stall that long, and a test that times its breaker would see it."""
    for api, body in _WARM_BODIES.items():
        check_request(api, body)
