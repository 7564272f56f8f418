"""Structured log lines: time, level, component, run id — text or JSON; secrets redacted."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable

from core.ops.redaction import redact

RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("openclaw_run", default=None)


class RunIdFilter(logging.Filter):
    """Adds ``run_id`` (the agent run this task works for, if any) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = RUN_ID.get()
        return True


class RedactFilter(logging.Filter):
    """Replaces known secret values, and pieces of them, wherever they would appear."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc = redact(record.exc_text or "", self.secrets)
        record.msg, record.args = redact(text, self.secrets), None
        if record.exc_text:
            record.exc_text = exc
        return True


def _iso(created: float) -> str:
    t = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-11-26T07:00:00.123Z INFO  openclaw.agents [run 42] message``."""

    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "run_id", None)
        line = (
            f"{_iso(record.created)} {record.levelname:<5} {record.name}"
            + (f" [run {run}]" if run else "")
            + f" {record.getMessage()}"
        )
        if record.exc_info or record.exc_text:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))  # type: ignore[arg-type]
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": _iso(record.created),
            "level": record.levelname,
            "component": record.name,
            "run_id": getattr(record, "run_id", None),
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            doc["exception"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> RedactFilter:
    """Configure the root logger for stderr; returns the redaction filter (add secrets to
    its ``secrets`` later if they become known later)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    redact = RedactFilter(secrets)
    handler.addFilter(RunIdFilter())
    handler.addFilter(redact)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return redact
