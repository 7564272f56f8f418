"""An agent's tools, built from its ``tools`` list and ``[tools]``."""

from __future__ import annotations

from pathlib import Path

from core.agents.memory import Memory
from core.agents.tools.actions import Notify, RunAgent
from core.agents.tools.base import Tool
from core.agents.tools.command import CommandTool
from core.agents.tools.http_get import HttpGet
from core.agents.tools.memory import Recall, Remember
from core.agents.tools.read_file import ReadFile
from core.config.agents import AgentConfig
from core.config.models import Config


def build_tools(
    agent: AgentConfig, config: Config, *, base_dir: Path, memory: Memory
) -> dict[str, Tool]:
    """The tools ``agent`` lists, by name (the config was checked at load: every name
    is a built-in or a command tool)."""
    tools: dict[str, Tool] = {}
    for name in agent.tools:
        tool: Tool
        if name == "http_get":
            tool = HttpGet(config.tools.http_get)
        elif name == "read_file":
            tool = ReadFile(config.tools.read_file, base_dir)
        elif name == "remember":
            tool = Remember(memory)
        elif name == "recall":
            tool = Recall(memory)
        elif name == "notify":
            tool = Notify(agent.deliver)
        elif name == "run_agent":
            others = {a.name: a.description for a in config.agents if a.name != agent.name}
            tool = RunAgent(others)
        else:
            tool = CommandTool(name, config.tools.commands[name], base_dir)
        tools[name] = tool
    return tools
