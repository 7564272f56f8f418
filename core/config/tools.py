"""Config of agents' tools: ``[tools.http_get]``, ``[tools.read_file]``, and any other name
under ``[tools]`` as an operator command tool; checked against every agent's ``tools``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.config.common import FiniteFloat, StrictModel
from core.errors import ConfigProblem
from core.suggest import close_matches

# the built-ins; their names are fixed (and no command tool may take one)
BUILTINS = ("http_get", "read_file", "remember", "recall", "notify", "run_agent")
# what every provider accepts as a function name (OpenAI: [a-zA-Z0-9_-]{1,64}; Gemini:
# a letter or underscore first)
TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class HttpGetConfig(StrictModel):
    """``http_get``: GET only; private, loopback, link-local and metadata addresses refused
    after DNS resolution unless listed."""

    allow_private: list[str] = Field(default_factory=list)  # "host" or "host:port"
    timeout_s: FiniteFloat = Field(default=15.0, gt=0)
    max_bytes: int = Field(default=256 * 1024, ge=1024)  # of the body read
    max_redirects: int = Field(default=5, ge=0)


class ReadFileConfig(StrictModel):
    """``read_file``: files under ``roots`` (relative to the config's folder) only."""

    roots: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=256 * 1024, ge=1024)


class ParameterConfig(StrictModel):
    """One argument of a command tool: a JSON Schema property of a scalar type."""

    type: Literal["string", "integer", "number", "boolean"] = "string"
    description: str = ""
    enum: list[str | int | float] | None = None


class CommandToolConfig(StrictModel):
    """An operator command tool: an argv (never a shell); ``{name}`` items are filled from
    the call's arguments, each one whole argv item."""

    description: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    parameters: dict[str, ParameterConfig] = Field(default_factory=dict)
    timeout_s: FiniteFloat = Field(default=10.0, gt=0)
    max_output_bytes: int = Field(default=64 * 1024, ge=256)
    approval: bool = False  # an admin approves each call from Telegram first

    def arguments_schema(self) -> dict[str, Any]:
        """The JSON Schema of its arguments: every parameter required, nothing else."""
        props: dict[str, Any] = {}
        for name, p in self.parameters.items():
            prop: dict[str, Any] = {"type": p.type}
            if p.description:
                prop["description"] = p.description
            if p.enum is not None:
                prop["enum"] = p.enum
            props[name] = prop
        return {
            "type": "object",
            "properties": props,
            "required": sorted(self.parameters),
            "additionalProperties": False,
        }


class ToolsConfig(BaseModel):
    """``[tools]``: the built-ins' settings by their names, command tools by any other."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    __pydantic_extra__: dict[str, CommandToolConfig] = Field(init=False)

    http_get: HttpGetConfig = Field(default_factory=HttpGetConfig)
    read_file: ReadFileConfig = Field(default_factory=ReadFileConfig)

    @property
    def commands(self) -> dict[str, CommandToolConfig]:
        """The operator command tools by name."""
        return dict(self.__pydantic_extra__ or {})

    def names(self) -> list[str]:
        """Every tool an agent may list."""
        return [*BUILTINS, *self.commands]


def check_tools(tools: ToolsConfig) -> list[ConfigProblem]:
    """Command tools' names, placeholders and parameters agree."""
    problems = []
    for name, cmd in tools.commands.items():
        key = f"tools.{name}"
        if name in BUILTINS:
            problems.append(
                ConfigProblem(
                    key,
                    f"{name} is a built-in tool and takes no settings",
                    f"remove [tools.{name}], or give the command tool another name",
                )
            )
        if not TOOL_NAME.match(name):
            problems.append(
                ConfigProblem(
                    key,
                    f"{name!r} is not a tool name models accept",
                    "use letters, digits, _ and -, starting with a letter (at most 64)",
                )
            )
        used: set[str] = set()
        for i, item in enumerate(cmd.command):
            names = PLACEHOLDER.findall(item)
            used.update(names)
            if names and PLACEHOLDER.fullmatch(item) is None:
                problems.append(
                    ConfigProblem(
                        f"{key}.command[{i}]",
                        f"{item!r}: a placeholder must be a whole argv item",
                        'split it, e.g. ["--path", "{path}"] instead of "--path={path}"',
                    )
                )
        for missing in sorted(used - set(cmd.parameters)):
            problems.append(
                ConfigProblem(
                    f"{key}.command",
                    f"{{{missing}}} is not one of its parameters",
                    f'add parameters = {{ {missing} = {{ type = "string" }} }}',
                )
            )
        for unused in sorted(set(cmd.parameters) - used):
            problems.append(
                ConfigProblem(
                    f"{key}.parameters.{unused}",
                    "not used in the command (the model would fill it for nothing)",
                    f'put "{{{unused}}}" in command, or remove the parameter',
                )
            )
    return problems


def check_agent_tools(
    key: str, agent: str, names: list[str], tools: ToolsConfig, system_event: bool
) -> list[ConfigProblem]:
    """An agent's ``tools`` exist and can be used."""
    problems = []
    known = tools.names()
    if names and system_event:
        problems.append(
            ConfigProblem(
                f"{key}.tools",
                f"agent {agent}: a systemEvent makes no model call, so it cannot use tools",
                'set kind = "agentTurn", or remove tools',
            )
        )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(ConfigProblem(f"{key}.tools", f"{name!r} is listed twice"))
        seen.add(name)
        if name not in known:
            close = close_matches(name, known)
            fix = (
                f"did you mean {', '.join(close)}?"
                if close
                else f"define it as [tools.{name}] with a command, or use one of: "
                + ", ".join(known)
            )
            problems.append(
                ConfigProblem(f"{key}.tools", f"agent {agent}: unknown tool {name!r}", fix)
            )
        if name == "read_file" and not tools.read_file.roots:
            problems.append(
                ConfigProblem(
                    "tools.read_file.roots",
                    f"agent {agent} uses read_file, but no folder may be read",
                    'add roots = ["reports"] (folders relative to the config file)',
                )
            )
    return problems
