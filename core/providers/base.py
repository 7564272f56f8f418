"""The adapter base: HTTP plumbing shared by every wire format.

An adapter maps a :class:`ModelCall` out and parses the answer back; this module
sends it, and is the one place where HTTP and transport failures become
:class:`ProviderError`. Adapters never retry and never log to the store: the
engine decides what a failure means.

Streaming and non-streaming share one parser per adapter: both turn the wire
format into :class:`Chunk` objects, and one :class:`Accumulator` turns chunks
into deltas and the final :class:`ModelResponse`.
"""

from __future__ import annotations

import copy
import json
import random
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp

from core.config.models import ProviderConfig
from core.drills.ticket import Ticket
from core.errors import ErrorKind, ProviderError
from core.ops.redaction import REDACTED, redact
from core.providers.think import ThinkSplitter
from core.types import ModelCall, ModelResponse, StreamDelta, ToolCall, Usage

DETAIL_MAX_CHARS = 300


class Malformed(Exception):
    """Raised by parsers when a body lacks what they need; becomes ``malformed``."""


class UpstreamError(Exception):
    """An error reported inside a 200 body or a stream; mapped like that HTTP status.
    ``error``: the wire format's error object, for :meth:`Provider.is_billing`."""

    def __init__(self, status: int, detail: str, error: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error: Mapping[str, Any] = error or {}


@dataclass(slots=True)
class ToolCallPart:
    """A tool call, or a piece of one in a stream. Pieces with one ``index`` are one call:
    ``id``, ``name`` and ``signature`` are kept from the first piece that has them and the
    ``arguments`` text is concatenated. Each adapter gives every call of an answer its own
    index (a content block's, a delta's, or a running count)."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""
    signature: str = ""


@dataclass(slots=True)
class Chunk:
    """What a parser makes of one response body or one stream event.

    ``text`` is visible text that may still hold ``<think>`` tags; ``reasoning``
    is a native reasoning field. Token counts are ``None`` when the event does not
    carry them; a later count replaces an earlier one (wire formats send totals).
    """

    text: str = ""
    reasoning: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None  # input read from the provider's prompt cache
    finish_reason: str | None = None
    done: bool = False  # the terminal event of a stream was seen
    end: bool = False  # nothing more will come: stop reading
    tool_calls: list[ToolCallPart] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HttpCall:
    """The request an adapter wants sent: a path under base_url, a JSON body, a query."""

    path: str
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str


class Accumulator:
    """Collects chunks into deltas and one final response; runs the think splitter."""

    def __init__(self) -> None:
        self._think = ThinkSplitter()
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._input = 0
        self._output = 0
        self._reasoning_tokens = 0
        self._cached = 0
        self.finish_reason: str | None = None
        self.done = False
        self._calls: dict[int, ToolCallPart] = {}

    def add(self, chunk: Chunk) -> StreamDelta | None:
        """Take one chunk; return the delta it completes, if any."""
        content, thought = self._think.feed(chunk.text)
        if chunk.input_tokens is not None:
            self._input = chunk.input_tokens
        if chunk.output_tokens is not None:
            self._output = chunk.output_tokens
        if chunk.reasoning_tokens is not None:
            self._reasoning_tokens = chunk.reasoning_tokens
        if chunk.cached_tokens is not None:
            self._cached = chunk.cached_tokens
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        for part in chunk.tool_calls:
            self._add_call(part)
        self.done = self.done or chunk.done
        return self._delta(content, chunk.reasoning + thought)

    def flush(self) -> StreamDelta | None:
        """The text is over: release what the think splitter held back."""
        content, reasoning = self._think.flush()
        return self._delta(content, reasoning)

    def response(self, status: int, model: str) -> ModelResponse:
        """The final response, content, reasoning and tool calls aggregated.

        A call without an id (Ollama, Gemini) gets one; an answer with tool calls whose API
        said only "stop" (Ollama, Gemini) finishes with ``tool_calls``, as OpenAI's does.
        """
        usage = Usage(self._input, self._output, self._reasoning_tokens, self._cached)
        calls = tuple(
            ToolCall(p.id or new_call_id(), p.name, p.arguments, p.signature)
            for _, p in sorted(self._calls.items())
        )
        finish = self.finish_reason
        if calls and finish in (None, "stop"):
            finish = "tool_calls"
        return ModelResponse(
            "".join(self._content),
            "".join(self._reasoning),
            usage,
            finish,
            status,
            model,
            calls,
        )

    def _add_call(self, part: ToolCallPart) -> None:
        held = self._calls.get(part.index)
        if held is not None and part.id and held.id and part.id != held.id:
            # another call under a reused index (servers that stream whole calls without
            # one): a call of its own, after the others
            part = ToolCallPart(
                max(self._calls) + 1, part.id, part.name, part.arguments, part.signature
            )
            held = None
        if held is None:
            self._calls[part.index] = ToolCallPart(
                part.index, part.id, part.name, part.arguments, part.signature
            )
            return
        held.id = held.id or part.id
        held.name = held.name or part.name
        held.signature = held.signature or part.signature
        held.arguments += part.arguments

    def _delta(self, content: str, reasoning: str) -> StreamDelta | None:
        if not content and not reasoning:
            return None
        self._content.append(content)
        self._reasoning.append(reasoning)
        return StreamDelta(content, reasoning)


# -- pure helpers ----------------------------------------------------------------


def new_call_id() -> str:
    """An id for a tool call whose API gave none (``call_`` + 24 hex digits, as OpenAI's)."""
    return f"call_{random.getrandbits(96):024x}"


# a 400 that names an unknown model (DeepSeek answers "Model Not Exist" with 400) or a bad
# key (Gemini answers API_KEY_INVALID with 400) is the config's fault, not the request's
_UNKNOWN_MODEL = re.compile(
    r"model[^.]{0,80}(not exist|not found|does not exist|unknown|not supported)"
    r"|(unknown|invalid|unsupported) model",
    re.IGNORECASE,
)
_BAD_KEY = re.compile(r"API_KEY_INVALID|api key not valid|invalid api key", re.IGNORECASE)
# a model that cannot do what the request asks (Ollama: "… does not support tools")
_NO_TOOLS = re.compile(r"does not support (tools|function calling)", re.IGNORECASE)


def kind_for_status(status: int, detail: str = "") -> ErrorKind:
    """The error kind of a non-2xx HTTP status (``detail``: the provider's message, which
    tells a config fault inside a 400 from the request's own)."""
    if status in (400, 422) and detail:
        if _BAD_KEY.search(detail):
            return "auth"
        if _UNKNOWN_MODEL.search(detail):
            return "not_found"
        if _NO_TOOLS.search(detail):
            return "unsupported"
    if status == 402:  # Payment Required: DeepSeek's "Insufficient Balance", Anthropic's billing
        return "billing"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "bad_request"  # 400, 422, 413 …: this request is refused
    return "malformed"  # 1xx/3xx: redirects are not followed, so the base_url is off


def parse_retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    ``headers`` must look keys up case-insensitively (aiohttp's CIMultiDict does).
    """
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


_SAMPLING_PARAM = re.compile(r"\b(temperature|top_p|top_k)\b")


def parameter_fix(detail: str, ref: str) -> str:
    """The fix to add to a 400 that names a sampling parameter the model refuses ("" when
    it names none): leave it out for that model with ``drop_params``."""
    named = sorted(set(_SAMPLING_PARAM.findall(detail)))
    if not named:
        return ""
    listed = ", ".join(f'"{p}"' for p in named)
    return f' (fix: [models."{ref}"] drop_params = [{listed}])'


def error_detail(body: bytes) -> str:
    """A short message from an error body: the provider's JSON error when there is one."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:DETAIL_MAX_CHARS]
    if isinstance(data, list) and data:
        data = data[0]  # Gemini sometimes wraps the error in a list
    message = ""
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            message = err
        elif isinstance(err, dict):
            label = err.get("type") or err.get("status") or err.get("code")
            msg = err.get("message") or err.get("detail") or ""
            message = f"{label}: {msg}" if label and msg else str(msg or label or "")
    if not message:
        message = " ".join(text.split())
    return message[:DETAIL_MAX_CHARS]


def error_object(body: bytes) -> dict[str, Any]:
    """The ``error`` object of an error body (``{}`` when it has none): what
    :meth:`Provider.is_billing` reads. Gemini sometimes wraps the body in a list."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return {}
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def load_json(text: str | bytes) -> Any:
    """Parse JSON or raise :class:`Malformed`."""
    try:
        return json.loads(text)
    except ValueError as e:
        raise Malformed(f"invalid JSON: {e}") from None


def as_dict(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else :class:`Malformed` naming ``what``."""
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an object")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    """``value`` if it is a JSON array, else :class:`Malformed` naming ``what``."""
    if not isinstance(value, list):
        raise Malformed(f"{what} is not an array")
    return value


def as_text(value: Any, what: str) -> str:
    """A string field; ``null``/missing is empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a string")
    return value


def as_count(value: Any, what: str) -> int:
    """A token count; ``null``/missing is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{what} is not an integer")
    return value


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines, decoded, without their line ends."""
    try:
        async for raw in response.content:
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n")
    except ValueError as e:  # aiohttp refuses lines over its buffer limit
        raise Malformed(f"stream line too long: {e}") from None


async def iter_sse(response: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
    """Server-sent events of a streamed response (``event:``/``data:`` lines)."""
    event, data = "", list[str]()
    async for line in _lines(response):
        if not line:
            if data:
                yield SSEEvent(event or "message", "\n".join(data))
            event, data = "", list[str]()
            continue
        if line.startswith(":"):
            continue  # a comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:  # a last event without its blank line: lenient, the terminal check decides
        yield SSEEvent(event or "message", "\n".join(data))


async def iter_ndjson(response: aiohttp.ClientResponse) -> AsyncIterator[Any]:
    """JSON values of a newline-delimited JSON stream."""
    async for line in _lines(response):
        if line.strip():
            yield load_json(line)


def _media_type(response: aiohttp.ClientResponse) -> str:
    media: str = response.headers.get("content-type", "")
    return media.split(";")[0].strip().lower()


# -- the adapter base --------------------------------------------------------------


class Provider(ABC):
    """One upstream speaking one wire format, over one pooled HTTP client."""

    api: ClassVar[str]
    stream_media_types: ClassVar[tuple[str, ...]] = ("text/event-stream",)

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        *,
        client: aiohttp.ClientSession | Callable[[], aiohttp.ClientSession],
        api_key: str | None = None,
        secret_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self._pool_owner: Provider | None = None  # set on a with_key() twin
        # mutable: an embedded model's supervisor points it at the child's current port
        self._base_url = config.resolved_base_url
        # a factory defers building the session to the first call: aiohttp sessions
        # belong to a running event loop, and a provider may be built before one runs
        self._session = client if isinstance(client, aiohttp.ClientSession) else None
        self._make_session = client if not isinstance(client, aiohttp.ClientSession) else None
        self._api_key = api_key
        # headers_env values: sent like config.headers, kept out of errors like the key
        self._secret_headers = dict(secret_headers or {})
        self._secrets = tuple(v for v in (api_key, *self._secret_headers.values()) if v)
        # a failure drill's ticket (see core/drills): this twin's calls of the drilled
        # model go to the drill server instead
        self._drill: Ticket | None = None

    def with_key(self, api_key: str, others: tuple[str, ...] = ()) -> Provider:
        """This adapter sending ``api_key`` instead: the same config and the same pooled
        HTTP client (one pool per provider, however many keys). ``others``: the provider's
        other keys, kept out of its errors too (a proxy may echo any of them)."""
        twin = copy.copy(self)
        twin._api_key = api_key
        twin._secrets = tuple(dict.fromkeys(v for v in (*self._secrets, api_key, *others) if v))
        twin._pool_owner = self._pool_owner or self
        return twin

    def with_drill(self, ticket: Ticket) -> Provider:
        """This adapter with its calls of ``ticket``'s model sent to the drill server (the
        same config, parsing and pooled client, so the same timeouts): the one attempt a
        failure drill faults."""
        twin = copy.copy(self)
        twin._drill = ticket
        twin._pool_owner = self._pool_owner or self
        return twin

    @property
    def base_url(self) -> str:
        """Where requests go; a with_key() twin follows the adapter it was made from."""
        return self._pool_owner.base_url if self._pool_owner is not None else self._base_url

    @base_url.setter
    def base_url(self, url: str) -> None:
        if self._pool_owner is not None:
            self._pool_owner.base_url = url
        else:
            self._base_url = url

    @property
    def _client(self) -> aiohttp.ClientSession:
        if self._pool_owner is not None:
            return self._pool_owner._client
        if self._session is None:
            assert self._make_session is not None
            self._session = self._make_session()
        return self._session

    # -- what each adapter provides ------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the key (and API version) on every request."""
        return {}

    def _headers(self) -> dict[str, str]:
        if not self._secret_headers:
            return self.auth_headers()
        return self._secret_headers | self.auth_headers()

    @abstractmethod
    def chat_call(self, model: str, call: ModelCall, *, stream: bool) -> HttpCall:
        """The request for one call, streaming or not."""

    @abstractmethod
    def parse_body(self, data: Any) -> list[Chunk]:
        """Parse a whole (non-streamed) response body."""

    @abstractmethod
    def parse_stream(self, response: aiohttp.ClientResponse) -> AsyncGenerator[Chunk, None]:
        """Parse a streamed response, chunk by chunk, with the same parser as the body."""

    @abstractmethod
    def models_call(self) -> HttpCall:
        """The request that lists the models."""

    @abstractmethod
    def parse_models(self, data: Any) -> list[str]:
        """Model ids from the list response."""

    def is_billing(self, status: int, error: Mapping[str, Any]) -> bool:
        """Whether an error answer (``status``, the body's ``error`` object) means the key
        has no credit or quota left. A 402 means that in every wire format (DeepSeek's
        "Insufficient Balance", Anthropic's ``billing_error``); adapters add their own shapes."""
        return status == 402

    def body_retry_after(self, error: Mapping[str, Any]) -> float | None:
        """Seconds to wait that an error body (its ``error`` object) asks for, for formats
        that say it there rather than in a header (Gemini's RetryInfo); None: it says none.
        A ``Retry-After`` header, where sent, wins."""
        return None

    # -- the contract --------------------------------------------------------------

    async def complete(self, model: str, call: ModelCall) -> ModelResponse:
        """Send one call and return the whole answer. Raises ProviderError."""
        request = self.chat_call(model, call, stream=False)
        async with self._open(model, "POST", request) as response:
            data = await self._read_json(model, response)
        acc = Accumulator()
        with self._mapped(model):
            for chunk in self.parse_body(data):
                acc.add(chunk)
        acc.flush()
        return acc.response(response.status, model)

    async def stream(
        self, model: str, call: ModelCall
    ) -> AsyncIterator[StreamDelta | ModelResponse]:
        """Send one call streaming: yield deltas, then exactly one final ModelResponse.

        Raises ProviderError, ``stream_cut`` when the stream ends without its terminal event.
        """
        request = self.chat_call(model, call, stream=True)
        acc = Accumulator()
        async with self._open(model, "POST", request) as response:
            self._check_media_type(model, response, self.stream_media_types)
            async with aclosing(self.parse_stream(response)) as chunks:
                while True:
                    with self._mapped(model, in_stream=True):
                        try:
                            chunk = await anext(chunks)
                        except StopAsyncIteration:
                            break
                    delta = acc.add(chunk)
                    if delta is not None:
                        yield delta
                    if chunk.end:
                        break
        if not acc.done:
            raise self._error("stream_cut", model, "the stream ended before its final event")
        tail = acc.flush()
        if tail is not None:
            yield tail
        yield acc.response(response.status, model)

    async def list_models(self) -> list[str]:
        """The model ids the upstream offers (used by ``openclaw doctor``). Raises ProviderError."""
        async with self._open("", "GET", self.models_call()) as response:
            data = await self._read_json("", response)
        with self._mapped(""):
            return self.parse_models(data)

    async def aclose(self) -> None:
        """Close the pooled HTTP client (if it was ever opened; a with_key() twin closes
        the one it shares)."""
        if self._pool_owner is not None:
            await self._pool_owner.aclose()
        elif self._session is not None:
            await self._session.close()

    # -- the one place failures are mapped -------------------------------------------

    def _error(
        self,
        kind: ErrorKind,
        model: str,
        detail: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> ProviderError:
        if self._secrets:  # pieces too: errors quote keys cut or masked
            detail = redact(detail, self._secrets)
        return ProviderError(
            kind, self.name, model, detail, status=status, retry_after_s=retry_after_s
        )

    def _transport_error(self, model: str, exc: Exception, *, in_stream: bool) -> ProviderError:
        what = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if isinstance(exc, TimeoutError):  # aiohttp's connect/read timeouts subclass it
            return self._error("timeout", model, what or "TimeoutError")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return self._error("refused", model, what)
        if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
            return self._error("misconfigured", model, f"{what}: check base_url")
        if in_stream:
            return self._error("stream_cut", model, what)
        # the connection broke before any response: the server side failed
        return self._error("server_error", model, what)

    def _status_error(
        self, model: str, response: aiohttp.ClientResponse, body: bytes
    ) -> ProviderError:
        status = response.status
        for secret in self._secrets:  # before error_detail cuts the text: a cut key would
            body = body.replace(secret.encode(), REDACTED.encode())  # go unredacted
        detail = error_detail(body) or response.reason or ""
        if status == 400 and _NO_TOOLS.search(detail):
            detail += f' (fix: [models."{self.name}/{model}"] tools = false)'
        elif status == 400:
            detail += parameter_fix(detail, f"{self.name}/{model}")
        elif status == 404 and "model" in detail.lower():  # not a wrong base_url: the id
            detail += " (model retired or misspelled: see the provider's deprecations page)"
        # before the status: a billing answer comes as 402, 429 or even 400 by format
        error = error_object(body)
        billing = self.is_billing(status, error)
        retry_after_s = parse_retry_after(response.headers, datetime.now(UTC))
        return self._error(
            "billing" if billing else kind_for_status(status, detail),
            model,
            detail,
            status=status,
            retry_after_s=self.body_retry_after(error) if retry_after_s is None else retry_after_s,
        )

    @contextmanager
    def _mapped(self, model: str, *, in_stream: bool = False) -> Iterator[None]:
        """Turn parser and transport failures raised inside the block into ProviderError."""
        try:
            yield
        except Malformed as e:
            raise self._error("malformed", model, str(e)) from None
        except UpstreamError as e:
            # reported inside a 200 answer: no HTTP status of its own. ``from None``:
            # the cause would carry the unredacted text into logged tracebacks
            billing = self.is_billing(e.status, e.error)
            kind = "billing" if billing else kind_for_status(e.status, e.detail)
            wait = self.body_retry_after(e.error)
            raise self._error(kind, model, e.detail, retry_after_s=wait) from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._transport_error(model, e, in_stream=in_stream) from e

    @asynccontextmanager
    async def _open(
        self, model: str, method: str, call: HttpCall
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        drill = self._drill if self._drill and self._drill.matches(self.name, model) else None
        url = (drill.url if drill else self.base_url) + call.path
        try:
            response = await self._client.request(
                method,
                url,
                json=call.body,
                params=call.params or None,
                # the drill server needs no key: none is sent to it
                headers={} if drill else self._headers(),
                # a 3xx means the base_url is off; following it would also carry a key
                # header (x-api-key, x-goog-api-key) to wherever the redirect points
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            if isinstance(e, ValueError) and not isinstance(e, aiohttp.ClientError):
                raise self._error(
                    "misconfigured", model, f"invalid URL: {e}: check base_url"
                ) from e
            raise self._transport_error(model, e, in_stream=False) from e
        try:
            if not 200 <= response.status < 300:
                body = b""
                with suppress(aiohttp.ClientError, TimeoutError):  # the status alone says enough
                    body = await response.read()
                raise self._status_error(model, response, body)
            yield response
        finally:
            # an unfinished body closes the connection instead of returning it to the pool
            response.release()

    async def _read_json(self, model: str, response: aiohttp.ClientResponse) -> Any:
        self._check_media_type(model, response, ("application/json",))
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise self._transport_error(model, e, in_stream=True) from e
        with self._mapped(model):
            return load_json(body)

    def _check_media_type(
        self, model: str, response: aiohttp.ClientResponse, expected: tuple[str, ...]
    ) -> None:
        media = _media_type(response)
        # a missing content-type is tolerated: some small servers omit it
        json_ok = "application/json" in expected and media.endswith("+json")
        if media and media not in expected and not json_ok:
            raise self._error(
                "malformed",
                model,
                f"unexpected content-type {media!r} (wanted {' or '.join(expected)})",
                status=response.status,
            )
