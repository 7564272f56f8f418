"""jinja2 rendering of agent prompts and channel messages."""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from core.errors import OpenClawError

# the templates shipped with OpenClaw; an operator's templates/ beside the config comes first
BUNDLED_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


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


def _environment(loader: jinja2.BaseLoader | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,  # a typo in a prompt fails loudly, not silently
        autoescape=jinja2.select_autoescape(("html", "html.j2"), default_for_string=False),
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Slack reads &, < and > as markup: escape them in text it should show as written
    env.filters["slack_escape"] = lambda v: (
        str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    )
    return env


# compiles inline templates at config load: the same options and filters as rendering, so
# what passes here also compiles there (an unknown filter is a compile-time error)
_CHECK_ENV = _environment(None)


def syntax_error(source: str) -> str | None:
    """Why the inline template ``source`` does not compile (with its line), or None."""
    try:
        _CHECK_ENV.parse(source)
        _CHECK_ENV.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        return f"line {e.lineno}: {e.message}"
    except jinja2.TemplateError as e:
        return f"{type(e).__name__}: {e}"
    return None


def _where(name: str) -> str:
    """`` (line N)`` of the innermost frame of the template ``name`` in the current
    exception: jinja2 rewrites tracebacks so template frames carry the template's file and
    line."""
    line = None
    for frame in traceback.extract_tb(sys.exc_info()[2]):
        if frame.filename.endswith(name) or frame.filename == "<template>":
            line = frame.lineno
    return f" (line {line})" if line else ""


class Templates:
    """Templates under one or more roots, the first that has a name wins (the operator's
    ``templates/`` before the shipped defaults); inline strings render in the same env."""

    def __init__(self, *roots: Path) -> None:
        self.roots = [r for r in roots if r.is_dir()] or list(roots[:1])
        self.env = _environment(_ConfinedLoader(self.roots))

    def render_string(self, source: str, context: dict[str, Any], what: str) -> str:
        """Render an inline template (``what`` names it in errors)."""
        try:
            return self.env.from_string(source).render(context).strip()
        except Exception as e:  # a filter or an expression can raise anything (1 / 0)
            raise TemplateError(f"{what}{_where('<template>')}: {type(e).__name__}: {e}") from None

    def render_file_sync(self, name: str, context: dict[str, Any]) -> str:
        """Render ``templates/<name>``; an error names the template (and the line)."""
        try:
            return self.env.get_template(name).render(context).strip()
        except jinja2.TemplateNotFound as e:
            where = ", ".join(str(r) for r in self.roots)
            if e.name != name:  # an {% include %} or {% extends %} inside it
                raise TemplateError(
                    f"template {name}: it includes {e.name!r}, which is not found under {where}"
                ) from None
            raise TemplateError(f"template {name!r} not found under {where}") from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(
                f"template {e.name or name} line {e.lineno}: TemplateSyntaxError: {e.message}"
            ) from None
        except Exception as e:  # a filter or an expression can raise anything (1 / 0)
            raise TemplateError(f"template {name}{_where(name)}: {type(e).__name__}: {e}") from None

    def check_file(self, name: str) -> str | None:
        """Why ``templates/<name>`` cannot be used (missing, or does not compile), or None."""
        try:
            self.env.get_template(name)
        except jinja2.TemplateNotFound as e:
            where = ", ".join(str(r) for r in self.roots)
            return f"{e.name!r} is not found under {where}"
        except jinja2.TemplateSyntaxError as e:
            return f"{e.name or name} line {e.lineno}: {e.message}"
        except jinja2.TemplateError as e:
            return f"{type(e).__name__}: {e}"
        return None

    async def render_file(self, name: str, context: dict[str, Any]) -> str:
        """Render ``templates/<name>`` off the event loop (the first load reads a file)."""
        return await asyncio.to_thread(self.render_file_sync, name, context)
