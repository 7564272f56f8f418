"""Answer validators per task. A failed validator makes the answer unusable (escalate)."""

from __future__ import annotations

import json
import re

from core.config.common import Validators

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def strip_fence(text: str) -> str:
    """Models often wrap JSON in a Markdown code fence; look inside it."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def validate(content: str, rules: Validators) -> str | None:
    """Return why ``content`` is unusable for a task with these rules, or None if it passes."""
    if not content.strip():
        return "empty answer"
    if rules.min_chars is not None and len(content.strip()) < rules.min_chars:
        return f"answer shorter than min_chars={rules.min_chars}"
    if rules.json_ or rules.json_keys:
        try:
            doc = json.loads(strip_fence(content))
        except json.JSONDecodeError as e:
            return f"answer is not valid JSON ({e.msg})"
        missing = [k for k in rules.json_keys if not isinstance(doc, dict) or k not in doc]
        if missing:
            return f"JSON answer lacks required keys: {', '.join(missing)}"
    if rules.regex is not None and not re.search(rules.regex, content):
        return f"answer does not match regex {rules.regex!r}"
    return None
