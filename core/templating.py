"""jinja2 rendering of agent prompts and channel messages."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from core.errors import OpenClawError


class TemplateError(OpenClawError):
    """A template is missing or failed to render; says which and why."""


class _ConfinedLoader(jinja2.FileSystemLoader):
    """A FileSystemLoader that refuses a file whose real path (links followed) is outside
    every root: a link in templates/ must not hand a prompt some other file on the machine.
    (jinja2 itself already refuses names with ``..``.)"""

    def __init__(self, roots: list[Path]) -> None:
        super().__init__(roots)
        self._real_roots = [os.path.realpath(r) for r in roots]

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        real = os.path.realpath(filename)
        if not any(real.startswith(root + os.sep) for root in self._real_roots):
            raise jinja2.TemplateError(
                f"{template!r} links to a file outside the templates folders: copy the file "
                "into templates/ instead"
            )
        return source, filename, uptodate


class Templates:
    """Templates under one or more roots, the first that has a name wins (the operator's
    ``templates/`` before the shipped defaults); inline strings render in the same env."""

    def __init__(self, *roots: Path) -> None:
        self.roots = [r for r in roots if r.is_dir()] or list(roots[:1])
        self.env = jinja2.Environment(
            loader=_ConfinedLoader(self.roots),
            undefined=jinja2.StrictUndefined,  # a typo in a prompt fails loudly, not silently
            autoescape=jinja2.select_autoescape(("html", "html.j2"), default_for_string=False),
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # Slack reads &, < and > as markup: escape them in text it should show as written
        self.env.filters["slack_escape"] = lambda v: (
            str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        )

    def render_string(self, source: str, context: dict[str, Any], what: str) -> str:
        """Render an inline template (``what`` names it in errors)."""
        try:
            return self.env.from_string(source).render(context).strip()
        except jinja2.TemplateError as e:
            raise TemplateError(f"{what}: {type(e).__name__}: {e}") from None

    def render_file_sync(self, name: str, context: dict[str, Any]) -> str:
        """Render ``templates/<name>``."""
        try:
            return self.env.get_template(name).render(context).strip()
        except jinja2.TemplateNotFound:
            where = ", ".join(str(r) for r in self.roots)
            raise TemplateError(f"template {name!r} not found under {where}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"template {name}: {type(e).__name__}: {e}") from None

    async def render_file(self, name: str, context: dict[str, Any]) -> str:
        """Render ``templates/<name>`` off the event loop (the first load reads a file)."""
        return await asyncio.to_thread(self.render_file_sync, name, context)
