"""Tools and JSON output: which models can serve a request, what each is sent, and whether
its answer serves it. Pure functions of the request, the candidate and the answer.

A model that cannot serve what a request asks for (tools to ``tools = false``, JSON output
to ``json = "none"``) is skipped with the reason, like a model over its context. A model
with JSON mode but no schema enforcement (``json = "object"``, e.g. DeepSeek) still gets a
schema request: in JSON mode, with the schema stated in a system message, and its answer
checked against the schema here. An answer that does not serve the request (a tool
nobody offered, arguments that are not JSON or break the tool's schema, a call refused by
``tool_choice``, JSON that is not JSON or breaks the schema) is ``unusable``: the next
tier gets the request, as with any validator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators as schema_validators
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from core.engine.routing import Candidate
from core.engine.validators import strip_fence
from core.types import ChatRequest, Message, ResponseFormat, ToolCall, ToolChoice, ToolSpec

# stated in the prompt whenever JSON mode is turned on by us: OpenAI's and DeepSeek's JSON
# mode refuse (400) a conversation that never says "JSON"
JSON_NOTE = "Answer with a single JSON object and nothing else."


def unfit(cand: Candidate, req: ChatRequest) -> str | None:
    """Why ``cand`` cannot serve ``req`` at all (None: it can)."""
    if req.uses_tools and not cand.tools:
        return f'the model does not take tools ([models."{cand.ref}"] tools = false)'
    fmt = req.response_format
    if fmt is not None and fmt.wants_json and cand.json == "none":
        return f'the model has no JSON output mode ([models."{cand.ref}"] json = "none")'
    return None


def output_format(
    cand: Candidate, req: ChatRequest, json_task: bool
) -> tuple[ResponseFormat | None, tuple[Message, ...]]:
    """The response format to send ``cand``, and the messages to send with it.

    A schema to a JSON-mode-only model goes as JSON mode with the schema in a system
    message; a task with ``json = true`` (and no format of its caller's) uses the model's
    JSON mode where it has one, saying so in the prompt.
    """
    fmt = req.response_format
    if fmt is None or not fmt.wants_json:
        # not with tools: JSON mode beside them is refused by some APIs and would keep the
        # model from calling the tools it was offered
        if json_task and cand.json != "none" and fmt is None and not req.tools:
            return ResponseFormat("json_object"), _with_note(req.messages, JSON_NOTE)
        return fmt, req.messages
    if fmt.type == "json_schema" and cand.json == "object":
        schema = json.dumps(fmt.schema or {}, separators=(",", ":"), sort_keys=True)
        note = f"{JSON_NOTE} It must match this JSON Schema: {schema}"
        return ResponseFormat("json_object"), _with_note(req.messages, note)
    return fmt, req.messages


def _with_note(messages: tuple[Message, ...], note: str) -> tuple[Message, ...]:
    """``note`` as a system message after the leading system messages (or first)."""
    lead = 0
    while lead < len(messages) and messages[lead].role == "system":
        lead += 1
    return (*messages[:lead], Message("system", note), *messages[lead:])


def check_tool_calls(
    calls: Sequence[ToolCall], tools: Sequence[ToolSpec], choice: ToolChoice | None
) -> str | None:
    """Why these tool calls (possibly none) do not serve the request, or None."""
    mode = choice.mode if choice is not None else "auto"
    if not calls:
        if mode == "required" and tools:
            return "no tool call, though tool_choice is required"
        if mode == "tool" and choice is not None:
            return f"no call of {choice.name!r}, though tool_choice names it"
        return None
    if mode == "none":
        return f"called {calls[0].name!r}, though tool_choice is none"
    offered = {t.name: t for t in tools}
    for call in calls:
        if mode == "tool" and choice is not None and call.name != choice.name:
            return f"called {call.name!r}, though tool_choice names {choice.name!r}"
        spec = offered.get(call.name)
        if spec is None:
            return f"called an unknown tool {call.name!r}"
        why = _arguments_fault(call, spec)
        if why is not None:
            return why
    return None


def _arguments_fault(call: ToolCall, spec: ToolSpec) -> str | None:
    text = call.arguments.strip() or "{}"  # no arguments at all: an empty object
    try:
        args = json.loads(text)
    except ValueError as e:
        return f"the arguments of {call.name!r} are not JSON ({e})"
    if not isinstance(args, dict):
        return f"the arguments of {call.name!r} are not a JSON object"
    return _schema_fault(args, spec.parameters, f"the arguments of {call.name!r}")


def check_json(content: str, fmt: ResponseFormat | None) -> str | None:
    """Why ``content`` is not the JSON ``fmt`` asks for, or None (also when none is asked)."""
    if fmt is None or not fmt.wants_json:
        return None
    try:
        doc = json.loads(strip_fence(content))
    except ValueError as e:
        return f"the answer is not valid JSON ({e})"
    if fmt.type == "json_object" and not isinstance(doc, dict):
        return "the answer is not a JSON object"
    if fmt.type == "json_schema" and fmt.schema is not None:
        return _schema_fault(doc, fmt.schema, "the answer")
    return None


def schema_error(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (for the gateway's 400), or None."""
    try:
        cls = schema_validators.validator_for(schema)
        cls.check_schema(dict(schema))
    except schema_errors.SchemaError as e:
        return e.message
    return unresolved_ref(schema)


def unresolved_ref(schema: Mapping[str, Any]) -> str | None:
    """The first ``$ref`` in ``schema`` that does not resolve inside it (nothing is fetched:
    a remote reference is unresolved too), or None."""
    registry: Registry[Any] = Registry().with_resource(
        _BASE, Resource.from_contents(dict(schema), default_specification=DRAFT202012)
    )
    resolver = registry.resolver(base_uri=_BASE)
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            return f"$ref {ref!r} does not resolve inside the schema"
    return None


_BASE = "urn:openclaw:schema"


def _refs(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _schema_fault(doc: Any, schema: Mapping[str, Any], what: str) -> str | None:
    if not schema:
        return None
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
        error = schema_errors.best_match(validator.iter_errors(doc))
    except (schema_errors.SchemaError, ValueError, Unresolvable) as e:
        # the gateway refuses such schemas; a caller inside the process may not have
        return f"the schema for {what} cannot be used ({e})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    at = f" at {where}" if where else ""
    return f"schema check failed for {what}{at}: {error.message}"


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """A compiled validator per schema: an agent's tools are checked on every turn."""
    schema = json.loads(schema_json)
    cls = schema_validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
