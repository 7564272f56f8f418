"""Template errors at run time name the template (and the line), whatever raised them."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.agents.templating import TemplateError, Templates


@pytest.fixture
def templates(tmp_path: Path) -> Templates:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "divide.j2").write_text("a\nb\n{{ 1 / n }}\n", encoding="utf-8")
    (tmp_path / "prompts" / "outer.j2").write_text('{% include "inner.j2" %}', encoding="utf-8")
    return Templates(tmp_path)


def test_an_exception_inside_a_file_template_names_it_and_its_line(templates: Templates) -> None:
    with pytest.raises(TemplateError) as info:
        templates.render_file_sync("prompts/divide.j2", {"n": 0})
    assert (
        str(info.value)
        == "template prompts/divide.j2 (line 3): ZeroDivisionError: division by zero"
    )


def test_a_missing_include_names_the_template_that_includes_it(templates: Templates) -> None:
    with pytest.raises(TemplateError) as info:
        templates.render_file_sync("prompts/outer.j2", {})
    assert "template prompts/outer.j2: it includes 'inner.j2', which is not found" in str(
        info.value
    )


def test_an_exception_inside_an_inline_template_names_it(templates: Templates) -> None:
    with pytest.raises(TemplateError) as info:
        templates.render_string("x\n{{ 1 / n }}", {"n": 0}, "agent a message")
    assert str(info.value) == "agent a message (line 2): ZeroDivisionError: division by zero"
