"""The fields of an OpenAI chat-completions body, one by one: each is mapped onto the
engine's types or refused, and none is dropped without a word.

OpenAI defines more than the pyramid can honour (several choices, log probabilities,
audio, penalties not every model takes). A client that sets one of those and gets an
answer anyway would believe it was applied; so a field is either mapped, or refused with
a 400 naming it and why, or, when its value asks for nothing beyond the default
(``n = 1``, ``logprobs = false``, ``store = false``…), accepted as the default it is. A
field OpenAI does not define is refused too: a misspelt ``max_token`` must not quietly
fall back to the model's budget. The list is the official SDK's
``CompletionCreateParamsBase`` (openai 3.57).

Pure functions over the parsed JSON; errors are :class:`FieldError`, which the gateway
answers as OpenAI's ``invalid_request_error`` with ``param`` set.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators as schema_validators

from core.engine.structured import unresolved_ref
from core.suggest import close_matches
from core.types import Message, ResponseFormat, Role, ToolCall, ToolChoice, ToolMode, ToolSpec

ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
# OpenAI's rule for function and response-format names
NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_STOP = 4
MAX_SEED = 2**63 - 1  # a 64-bit signed integer, as OpenAI takes it

# -- the signature in the id ----------------------------------------------------------
#
# Gemini signs its tool calls (thoughtSignature) and refuses the next turn unless the
# signature comes back with the call. OpenAI clients echo only a call's id, so the id the
# gateway hands out carries the signature: ``<id>__ts__<signature as base32>``, lowercase
# and unpadded. Base32's alphabet (a-z, 2-7) has no "_", so the last ``__ts__`` is the
# separator whatever the upstream id holds; an id without a signature that itself
# contains the marker gets an empty tail, so every encoded id decodes to exactly its
# (id, signature). A client's own id (one the gateway never made) decodes to itself.
SIGNATURE_MARK = "__ts__"
_B32 = re.compile(r"[a-z2-7]*")


def encode_call_id(call_id: str, signature: str) -> str:
    """The id a client gets for a call: ``call_id``, with ``signature`` folded in."""
    if not signature and SIGNATURE_MARK not in call_id:
        return call_id
    tail = base64.b32encode(signature.encode()).decode().rstrip("=").lower()
    return f"{call_id}{SIGNATURE_MARK}{tail}"


def decode_call_id(sent: str) -> tuple[str, str]:
    """(id, signature) of an id from :func:`encode_call_id`; any other id is (itself, "")."""
    head, mark, tail = sent.rpartition(SIGNATURE_MARK)
    if not mark or not _B32.fullmatch(tail):
        return sent, ""
    padded = tail.upper() + "=" * (-len(tail) % 8)
    try:
        return head, base64.b32decode(padded).decode()
    except (binascii.Error, UnicodeDecodeError):
        return sent, ""


class FieldError(ValueError):
    """A field the gateway cannot take: ``param`` names it (``messages[2].tool_call_id``)."""

    def __init__(self, param: str | None, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


# -- fields refused unless they ask for nothing ----------------------------------------

# field -> (the values that ask for nothing beyond the default, why anything else is refused)
REFUSED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((1,), "only n = 1 is supported"),
    "logprobs": (
        (False,),
        "logprobs is not supported: the pyramid's models do not all return log probabilities",
    ),
    "top_logprobs": (
        (),
        "top_logprobs is not supported: the pyramid's models do not all return log probabilities",
    ),
    "audio": ((), "audio is not supported: the gateway answers with text only"),
    "modalities": (
        (["text"],),
        'modalities must be ["text"]: the gateway answers with text only',
    ),
    "prediction": ((), "prediction (predicted outputs) is not supported"),
    "web_search_options": (
        (),
        "web_search_options is not supported: the models behind the gateway do not search "
        "the web; offer the model a search tool of your own in tools",
    ),
    "logit_bias": (
        ({},),
        "logit_bias is not supported: token ids differ between the pyramid's models",
    ),
    "functions": ((), "functions is deprecated and not supported: use tools"),
    "function_call": ((), "function_call is deprecated and not supported: use tool_choice"),
    "frequency_penalty": (
        (0,),
        "frequency_penalty is not supported (only 0): not every model of the pyramid takes it",
    ),
    "presence_penalty": (
        (0,),
        "presence_penalty is not supported (only 0): not every model of the pyramid takes it",
    ),
    "store": (
        (False,),
        "store is not supported: the gateway keeps no completions for distillation or evals "
        "(its ledger records usage, not answers)",
    ),
    "metadata": (
        ({},),
        "metadata is not supported: it tags stored completions, and the gateway stores none "
        "(see store)",
    ),
    "reasoning_effort": (
        (),
        "reasoning_effort is not supported: whether a model thinks is set per task in the "
        "config ([tasks] think = false); pick the task with model = task:<name>",
    ),
    "verbosity": ((), "verbosity is not supported: not every model of the pyramid takes it"),
    "service_tier": (
        ("auto", "default"),
        "service_tier must be auto or default: the gateway has no flex or priority processing",
    ),
    "prompt_cache_key": (
        (),
        "prompt_cache_key is not supported: each provider caches prompt prefixes by itself "
        "and takes no key from the gateway; to name the caller, use user or safety_identifier",
    ),
    "prompt_cache_options": (
        (),
        "prompt_cache_options is not supported: each provider caches prompt prefixes by itself",
    ),
    "prompt_cache_retention": (
        (),
        "prompt_cache_retention is not supported: each provider caches prompt prefixes by itself",
    ),
    "moderation": ((), "moderation is not supported: the gateway runs no moderation"),
}

# fields mapped onto the ChatRequest (parsed in openai_api.parse_chat)
MAPPED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "stream",
        "stream_options",
        "user",
        "safety_identifier",
    }
)


def _neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    # False == 0 in Python: a bool is neutral only where a bool is listed, and vice versa
    return any(value == n and isinstance(value, bool) == isinstance(n, bool) for n in neutral)


def check_fields(body: Mapping[str, Any]) -> None:
    """Refuse unknown fields and the fields that ask for what the gateway cannot do.
    ``body`` holds no nulls (null counts as absent)."""
    for key, value in body.items():
        if key in REFUSED:
            neutral, why = REFUSED[key]
            if not _neutral(value, neutral):
                raise FieldError(key, why, "unsupported_parameter")
        elif key not in MAPPED:
            raise FieldError(key, f"unknown field {key}{_did_you_mean(key)}", "unknown_parameter")


def _did_you_mean(key: str) -> str:
    near = close_matches(key, sorted(MAPPED | REFUSED.keys()), 1)
    return f"; did you mean {near[0]}?" if near else ""


def _unknown_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise FieldError(f"{where}.{key}", f"unknown field {where}.{key}", "unknown_parameter")


def _present(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without its nulls: null counts as absent, at every depth."""
    return {k: v for k, v in obj.items() if v is not None}


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(where, f"{where} must be an object")
    return _present(value)


def _string(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise FieldError(where, f"{where} must be a {'' if empty else 'non-empty '}string")
    return value


def flag(value: Any, where: str) -> bool:
    """``value`` if it is a boolean."""
    if not isinstance(value, bool):
        raise FieldError(where, f"{where} must be a boolean")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise FieldError(where, f"{where} must be 1 to 64 letters, digits, underscores or dashes")
    return value


def check_schema(schema: Any, where: str) -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema object (by its own ``$schema`` draft)."""
    if not isinstance(schema, dict):
        raise FieldError(where, f"{where} must be a JSON Schema object")
    try:
        text = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):  # came from JSON: only a nesting too deep fails here
        raise FieldError(where, f"{where} is not a valid JSON Schema") from None
    problem = _schema_problem(text)
    if problem is not None:
        at, message = problem
        raise FieldError(where, f"{where}{at}{message}")
    return schema


@lru_cache(maxsize=256)
def _schema_problem(text: str) -> tuple[str, str] | None:
    """What is wrong with a schema (where in it, and the message), by its JSON text.

    Cached: checking a schema against its draft's meta-schema costs about a millisecond per
    tool, and an agent framework sends the same tools with every request of a conversation
    (bench/gateway_overhead.py --kind tools measured it at 4x a plain request's CPU).
    """
    schema = json.loads(text)
    draft = schema.get("$schema")
    # a $schema jsonschema does not know falls back to the default given: asked with two
    # defaults, an unknown one answers differently (without a default it only warns, and
    # the engine, checking answers against this schema later, would warn on every answer)
    known = draft is None or (
        isinstance(draft, str)
        and schema_validators.validator_for(schema, default=schema_validators.Draft4Validator)
        is schema_validators.validator_for(schema, default=schema_validators.Draft6Validator)
    )
    if not known:
        return "", ".$schema names no JSON Schema draft (e.g. draft-07 or 2020-12)"
    try:
        schema_validators.validator_for(schema).check_schema(schema)
    except schema_errors.SchemaError as e:
        at = "".join(f"[{p!r}]" for p in e.absolute_path)
        return at, f" is not a valid JSON Schema: {e.message}"
    unresolved = unresolved_ref(schema)  # else every answer checked against it would fail
    return None if unresolved is None else ("", f" is not a usable JSON Schema: {unresolved}")


# -- messages -------------------------------------------------------------------------

_MESSAGE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
# message fields OpenAI defines that no model of the pyramid can take
_MESSAGE_REFUSED = {
    "name": "participant names are not supported",
    "refusal": "an assistant refusal cannot be sent back; put its text in content",
    "audio": "audio is not supported: the gateway answers with text only",
    "function_call": "function_call is deprecated and not supported: use tool_calls",
}


def content(value: Any, where: str) -> str:
    """A message's content: a string, text parts (joined), or null (empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise FieldError(
                    f"{where}[{i}]",
                    f"{where}[{i}]: only text parts are supported "
                    '({"type": "text", "text": "..."})',
                )
            _unknown_keys(_present(part), frozenset({"type", "text"}), f"{where}[{i}]")
            texts.append(part["text"])
        return "".join(texts)
    raise FieldError(where, f"{where} must be a string or a list of text parts")


def _tool_calls(value: Any, where: str) -> tuple[tuple[ToolCall, str], ...]:
    """An assistant's tool_calls: each call, with the id as the client sent it."""
    if not isinstance(value, list):
        raise FieldError(where, f"{where} must be an array")
    calls = []
    for i, raw in enumerate(value):
        at = f"{where}[{i}]"
        tc = _object(raw, at)
        if tc.get("type") != "function":
            raise FieldError(f"{at}.type", f'{at}.type must be "function"')
        _unknown_keys(tc, frozenset({"id", "type", "function"}), at)
        sent = _string(tc.get("id"), f"{at}.id", empty=False)
        fn = _object(tc.get("function"), f"{at}.function")
        _unknown_keys(fn, frozenset({"name", "arguments"}), f"{at}.function")
        name = _string(fn.get("name"), f"{at}.function.name", empty=False)
        arguments = _string(fn.get("arguments"), f"{at}.function.arguments")
        call_id, signature = decode_call_id(sent)
        calls.append((ToolCall(call_id, name, arguments, signature), sent))
    return tuple(calls)


def messages(raw: Any) -> tuple[Message, ...]:
    """``messages`` → Messages. A tool message must answer a call of the assistant message
    right before its run of tool messages, each call exactly once (OpenAI's own rule, and
    Anthropic's and Gemini's); its ``name`` comes from that call."""
    if not isinstance(raw, list) or not raw:
        raise FieldError("messages", "messages must be a non-empty array")
    out: list[Message] = []
    # the calls of the last assistant message still waiting for their results, by the id
    # as the client sent it and by the decoded id (a client may echo either)
    pending: dict[str, ToolCall] = {}
    waiting: list[str] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role == "function":
            raise FieldError(
                f"{where}.role",
                f"{where}.role: the function role is deprecated and not supported: use a "
                "tool message (role tool, with tool_call_id)",
            )
        if not isinstance(m, dict) or role not in ROLES:
            raise FieldError(f"{where}.role", f"{where}.role must be one of {', '.join(ROLES)}")
        msg = _present(m)
        kind = ROLES[role]
        for key in msg:
            if key in _MESSAGE_REFUSED and key not in _MESSAGE_KEYS[kind]:
                raise FieldError(f"{where}.{key}", f"{where}.{key}: {_MESSAGE_REFUSED[key]}")
        _unknown_keys(msg, _MESSAGE_KEYS[kind], where)
        text = content(msg.get("content"), f"{where}.content")
        if kind != "tool" and waiting:
            raise FieldError(
                where,
                f"{where}: the tool calls of the assistant message before it have no "
                f"results: {', '.join(waiting)}; answer each with a tool message first",
            )
        if kind == "tool":
            out.append(_tool_result(msg, text, where, pending, waiting))
            continue
        pending.clear()
        calls: tuple[tuple[ToolCall, str], ...] = ()
        if kind == "assistant" and "tool_calls" in msg:
            calls = _tool_calls(msg["tool_calls"], f"{where}.tool_calls")
            for call, sent in calls:
                if call.id in pending or sent in pending:
                    raise FieldError(
                        f"{where}.tool_calls", f"{where}.tool_calls: the id {sent!r} repeats"
                    )
                pending[call.id] = pending[sent] = call
                waiting.append(sent)
        out.append(Message(kind, text, tuple(c for c, _ in calls)))
    if waiting:
        raise FieldError(
            "messages",
            f"the last assistant message's tool calls have no results: {', '.join(waiting)}; "
            "answer each with a tool message",
        )
    return tuple(out)


def _tool_result(
    msg: Mapping[str, Any],
    text: str,
    where: str,
    pending: dict[str, ToolCall],
    waiting: list[str],
) -> Message:
    if not pending:
        raise FieldError(
            f"{where}.role",
            f"{where}: a tool message must follow an assistant message with tool_calls",
        )
    sent = _string(msg.get("tool_call_id"), f"{where}.tool_call_id", empty=False)
    call = pending.get(sent) or pending.get(decode_call_id(sent)[0])
    if call is None:
        raise FieldError(
            f"{where}.tool_call_id",
            f"{where}.tool_call_id {sent!r} is not a call of the assistant message before it",
        )
    answered = [w for w in waiting if pending[w] is call]
    if not answered:
        raise FieldError(
            f"{where}.tool_call_id", f"{where}.tool_call_id {sent!r} is answered twice"
        )
    waiting.remove(answered[0])
    name = msg.get("name")
    if name is not None and name != call.name:
        raise FieldError(
            f"{where}.name",
            f"{where}.name {name!r} is not the name of the call it answers ({call.name!r})",
        )
    return Message("tool", text, tool_call_id=call.id, name=call.name)


# -- tools, tool_choice, response_format, stop ------------------------------------------


def tools(raw: Any) -> tuple[ToolSpec, ...]:
    """``tools``: function tools only, each with a valid name and JSON Schema."""
    if not isinstance(raw, list):
        raise FieldError("tools", "tools must be an array")
    out: list[ToolSpec] = []
    for i, value in enumerate(raw):
        at = f"tools[{i}]"
        tool = _object(value, at)
        if tool.get("type") != "function":
            raise FieldError(
                f"{at}.type",
                f'{at}.type must be "function": only function tools are supported',
            )
        _unknown_keys(tool, frozenset({"type", "function"}), at)
        fn = _object(tool.get("function"), f"{at}.function")
        _unknown_keys(
            fn, frozenset({"name", "description", "parameters", "strict"}), f"{at}.function"
        )
        name = _name(fn.get("name"), f"{at}.function.name")
        if any(t.name == name for t in out):
            raise FieldError(f"{at}.function.name", f"{at}.function.name {name!r} repeats")
        params: dict[str, Any] = {}
        if "parameters" in fn:
            params = check_schema(fn["parameters"], f"{at}.function.parameters")
            if params.get("type", "object") != "object":
                raise FieldError(
                    f"{at}.function.parameters",
                    f"{at}.function.parameters must describe an object "
                    '("type": "object"): a tool takes named arguments',
                )
        out.append(
            ToolSpec(
                name,
                _string(fn.get("description", ""), f"{at}.function.description"),
                params,
                flag(fn.get("strict", False), f"{at}.function.strict"),
            )
        )
    return tuple(out)


_MODES: dict[str, ToolMode] = {"auto": "auto", "none": "none", "required": "required"}


def tool_choice(raw: Any, offered: Sequence[ToolSpec]) -> ToolChoice | None:
    """``tool_choice``: auto, none, required, or one function of ``offered`` by name.
    Without tools, auto and none ask for nothing (None); the others cannot be met."""
    if isinstance(raw, str):
        if raw not in _MODES:
            raise FieldError(
                "tool_choice",
                'tool_choice must be "auto", "none", "required" or '
                '{"type": "function", "function": {"name": ...}}',
            )
        if not offered:
            if raw == "required":
                raise FieldError("tool_choice", 'tool_choice "required" needs tools')
            return None
        return ToolChoice(_MODES[raw])
    choice = _object(raw, "tool_choice")
    if choice.get("type") != "function":
        raise FieldError(
            "tool_choice.type",
            'tool_choice.type must be "function": only function tools are supported',
        )
    _unknown_keys(choice, frozenset({"type", "function"}), "tool_choice")
    fn = _object(choice.get("function"), "tool_choice.function")
    _unknown_keys(fn, frozenset({"name"}), "tool_choice.function")
    name = _string(fn.get("name"), "tool_choice.function.name", empty=False)
    names = [t.name for t in offered]
    if name not in names:
        known = ", ".join(names) if names else "no tools are given"
        raise FieldError(
            "tool_choice.function.name",
            f"tool_choice.function.name {name!r} is not one of the tools ({known})",
        )
    return ToolChoice("tool", name)


def response_format(raw: Any) -> ResponseFormat | None:
    """``response_format``: text (None: the default), json_object, or json_schema."""
    fmt = _object(raw, "response_format")
    kind = fmt.get("type")
    if kind == "text":
        _unknown_keys(fmt, frozenset({"type"}), "response_format")
        return None
    if kind == "json_object":
        _unknown_keys(fmt, frozenset({"type"}), "response_format")
        return ResponseFormat("json_object")
    if kind != "json_schema":
        raise FieldError(
            "response_format.type",
            'response_format.type must be "text", "json_object" or "json_schema"',
        )
    _unknown_keys(fmt, frozenset({"type", "json_schema"}), "response_format")
    where = "response_format.json_schema"
    spec = _object(fmt.get("json_schema"), where)
    _unknown_keys(spec, frozenset({"name", "description", "schema", "strict"}), where)
    schema = check_schema(spec["schema"], f"{where}.schema") if "schema" in spec else None
    return ResponseFormat(
        "json_schema",
        _name(spec.get("name"), f"{where}.name"),
        schema,
        flag(spec.get("strict", False), f"{where}.strict"),
        _string(spec.get("description", ""), f"{where}.description"),
    )


def stop(raw: Any) -> tuple[str, ...]:
    """``stop``: a string, or up to four of them."""
    values = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(values, list)
        or len(values) > MAX_STOP
        or not all(isinstance(s, str) and s for s in values)
    ):
        raise FieldError(
            "stop", f"stop must be a non-empty string or an array of up to {MAX_STOP} of them"
        )
    return tuple(values)


def number(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    """A number from ``lo`` to ``hi`` (not a bool), or None when absent."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise FieldError(key, f"{key} must be a number from {lo:g} to {hi:g}")
    return float(value)


def seed(raw: Any) -> int:
    """``seed``: a 64-bit signed whole number."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not -MAX_SEED - 1 <= raw <= MAX_SEED:
        raise FieldError("seed", f"seed must be a whole number from {-MAX_SEED - 1} to {MAX_SEED}")
    return raw


def stream_options(raw: Any, streaming: bool) -> bool:
    """``stream_options`` → include_usage. Only with ``stream``, as OpenAI has it."""
    options = _object(raw, "stream_options")
    if "include_obfuscation" in options:
        raise FieldError(
            "stream_options.include_obfuscation",
            "stream_options.include_obfuscation is not supported: the gateway pads no events",
            "unsupported_parameter",
        )
    _unknown_keys(options, frozenset({"include_usage"}), "stream_options")
    if options and not streaming:
        raise FieldError("stream_options", "stream_options is only allowed when stream is true")
    return flag(options.get("include_usage", False), "stream_options.include_usage")


def caller(body: Mapping[str, Any]) -> str | None:
    """``user`` and ``safety_identifier`` both name who asked: one caller."""
    found = {}
    for key in ("safety_identifier", "user"):
        if key in body:
            found[key] = _string(body[key], key)
    if len(set(found.values())) > 1:
        raise FieldError(
            "user", "user and safety_identifier name different callers; send one of them"
        )
    return next(iter(found.values()), None)
