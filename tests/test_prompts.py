"""Tests for gembulk.prompts: template syntax, column checks, rendering and template resolution."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gembulk.errors import TemplateError
from gembulk.prompts import Template, prompt_template

# --------------------------------------------------------------------------------------------------
# Parsing


def test_parse_fields_in_first_use_order() -> None:
    template = Template.parse("Translate {text} to {lang}. Again: {text}!")
    assert template.source == "Translate {text} to {lang}. Again: {text}!"
    assert template.fields == ("text", "lang")


def test_literal_braces() -> None:
    template = Template.parse('JSON like {{"a": {value}}} and }}{{')
    assert template.fields == ("value",)
    assert template.render({"value": 1}) == 'JSON like {"a": 1} and }{'


def test_names_with_spaces_dashes_and_unicode() -> None:
    template = Template.parse("{first name}|{e-mail}|{größe}|{ padded }|{日本}")
    assert template.fields == ("first name", "e-mail", "größe", " padded ", "日本")
    fields = {"first name": "Ada", "e-mail": "a@b", "größe": 3, " padded ": "p", "日本": "語"}
    assert template.render(fields) == "Ada|a@b|3|p|語"


def test_template_without_placeholders() -> None:
    template = Template.parse("Say hello.")
    assert template.fields == ()
    assert template.render({}) == "Say hello."


def test_empty_template() -> None:
    template = Template.parse("")
    assert template.fields == ()
    assert template.render({"x": 1}) == ""


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("Hi {user.name}", "attribute access"),
        ("Hi {items[0]}", "index access"),
        ("Hi {name!r}", "a conversion"),
        ("Hi {name:>10}", "a format spec"),
        ("Hi {name!s:^3}", "a conversion"),
    ],
)
def test_attribute_index_conversion_format_spec_are_refused(text: str, what: str) -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse(text)
    message = info.value.message
    assert f"uses {what}, which is not supported" in message
    assert "line 1, column 4" in message
    assert "a placeholder is a column name in braces, e.g. {prompt}" in message
    assert "{{ and }}" in message


def test_stray_closing_bracket_in_name() -> None:
    with pytest.raises(TemplateError, match=r"contains '\]'"):
        Template.parse("{a]b}")


def test_empty_placeholder() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("x {} y")
    assert info.value.message.startswith("empty placeholder {} at line 1, column 3: ")


@pytest.mark.parametrize("text", ["{0}", "{12} apples"])
def test_positional_placeholder(text: str) -> None:
    with pytest.raises(TemplateError, match=r"positional placeholder \{\d+\} at line 1, column 1"):
        Template.parse(text)


def test_unbalanced_open_brace_names_position() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("line one\nsay {name")
    assert info.value.message == "unbalanced '{' at line 2, column 5: write '{{' for a literal brace"


def test_unbalanced_close_brace_names_position() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("a {b} c } d")
    assert info.value.message == "unbalanced '}' at line 1, column 9: write '}}' for a literal brace"


def test_nested_braces() -> None:
    with pytest.raises(
        TemplateError, match=r"unexpected '\{' inside the placeholder opened at line 1, column 1"
    ):
        Template.parse("{a{b}}")


def test_triple_braces() -> None:
    # "{{{x}}}" is a literal brace, a placeholder, a literal brace: what str.format does too.
    template = Template.parse("{{{x}}}")
    assert template.fields == ("x",)
    assert template.render({"x": "v"}) == "{v}"


def test_templates_compare_by_source() -> None:
    assert Template.parse("{a} b") == Template.parse("{a} b")
    assert Template.parse("{a} b") != Template.parse("{a} c")


def test_direct_construction_compiles_source() -> None:
    template = Template(source="hi {name}", fields=("name",))
    assert template.render({"name": "Bo"}) == "hi Bo"


# --------------------------------------------------------------------------------------------------
# Rendering


def test_render_value_types() -> None:
    template = Template.parse("{s}|{none}|{i}|{f}|{b}|{d}|{l}")
    fields = {
        "s": "text",
        "none": None,
        "i": 42,
        "f": 1.5,
        "b": True,
        "d": {"k": "ü", "n": [1, 2]},
        "l": ["a", None],
    }
    assert template.render(fields) == 'text||42|1.5|True|{"k": "ü", "n": [1, 2]}|["a", null]'


def test_render_keeps_braces_in_values() -> None:
    assert Template.parse("{a}").render({"a": "{b} {{c}}"}) == "{b} {{c}}"


def test_render_missing_field() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("{a} {b}").render({"a": 1})
    assert info.value.message == "row has no field 'b' used by the template"


@pytest.mark.timing
def test_render_is_fast() -> None:
    template = Template.parse("Summarize {title} by {author}:\n\n{body}\n\nIn {lang}.")
    fields = {"title": "T", "author": "A", "body": "text " * 50, "lang": "en"}
    started = time.perf_counter()
    for _ in range(100_000):
        template.render(fields)
    assert time.perf_counter() - started < 1.0


# --------------------------------------------------------------------------------------------------
# Column checks


def test_check_columns_accepts_present_columns() -> None:
    Template.parse("{a} {b}").check_columns(["b", "a", "c"], "in.csv")


def test_check_columns_suggests_closest() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("Q: {questoin}").check_columns(["id", "question", "answer"], "in.csv")
    assert info.value.message == (
        "template uses {questoin}, but in.csv has no column 'questoin' "
        "(columns: id, question, answer); did you mean {question}?"
    )


def test_check_columns_suggests_case_and_space_variants() -> None:
    with pytest.raises(TemplateError, match=r"did you mean \{Prompt\}\?$"):
        Template.parse("{ prompt }").check_columns(["id", "Prompt"], "in.csv")


def test_check_columns_without_suggestion() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("{zzz}").check_columns(["id", "question"], "data.jsonl")
    assert (
        info.value.message
        == "template uses {zzz}, but data.jsonl has no column 'zzz' (columns: id, question)"
    )


def test_check_columns_on_empty_input() -> None:
    with pytest.raises(TemplateError, match=r"\(columns: none: the input has no rows\)"):
        Template.parse("{prompt}").check_columns([], "in.jsonl")


def test_check_columns_truncates_long_lists() -> None:
    columns = [f"c{i}" for i in range(100)]
    with pytest.raises(TemplateError) as info:
        Template.parse("{zzz}").check_columns(columns, "wide.csv")
    assert "c29, and 70 more" in info.value.message
    assert "c30" not in info.value.message


# --------------------------------------------------------------------------------------------------
# prompt_template


def test_explicit_template() -> None:
    template = prompt_template("Hi {name}", None, None, ["name"], "csv", "in.csv")
    assert template.fields == ("name",)


def test_explicit_template_is_checked() -> None:
    with pytest.raises(TemplateError, match=r"has no column 'nmae'.*did you mean \{name\}"):
        prompt_template("Hi {nmae}", None, None, ["name"], "csv", "in.csv")


def test_template_file(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffDear {name},\nplease {task}.\n".encode())
    template = prompt_template(None, str(path), None, ["name", "task"], "csv", "in.csv")
    assert template.source == "Dear {name},\nplease {task}."
    assert template.render({"name": "Ann", "task": "reply"}) == "Dear Ann,\nplease reply."


def test_template_file_keeps_inner_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("{a}\n\n", encoding="utf-8")
    assert prompt_template(None, str(path), None, ["a"], "csv", "in.csv").source == "{a}\n"


def test_template_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "missing.txt"
    with pytest.raises(TemplateError) as info:
        prompt_template(None, str(path), None, ["a"], "csv", "in.csv")
    assert info.value.message.startswith(f"cannot read template file {path}: ")
    assert "No such file" in info.value.message


def test_template_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"caf\xe9 {a}")
    with pytest.raises(TemplateError, match="cannot read template file"):
        prompt_template(None, str(path), None, ["a"], "csv", "in.csv")


def test_template_file_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("ok {a}\nbad {b.c}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="at line 2, column 5"):
        prompt_template(None, str(path), None, ["a", "b"], "csv", "in.csv")


def test_template_and_file_together(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="either -t/--template or --template-file, not both"):
        prompt_template("{a}", str(tmp_path / "t.txt"), None, ["a"], "csv", "in.csv")


def test_prompt_column_with_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="--prompt-column cannot be combined"):
        prompt_template("{a}", None, "a", ["a"], "csv", "in.csv")


def test_prompt_column() -> None:
    template = prompt_template(None, None, "question", ["id", "question"], "csv", "in.csv")
    assert template.fields == ("question",)
    assert template.render({"question": "Why {this}?"}) == "Why {this}?"


def test_prompt_column_with_special_characters_in_name() -> None:
    name = "weird.{name}:[0]!"
    template = prompt_template(None, None, name, [name], "csv", "in.csv")
    assert template.fields == (name,)
    assert template.render({name: "v"}) == "v"


def test_prompt_column_missing() -> None:
    with pytest.raises(TemplateError, match=r"has no column 'questoin'.*did you mean \{question\}"):
        prompt_template(None, None, "questoin", ["question"], "csv", "in.csv")


def test_default_prompt_column() -> None:
    template = prompt_template(None, None, None, ["id", "prompt"], "jsonl", "in.jsonl")
    assert template.fields == ("prompt",)
    assert template.source == "{prompt}"


def test_txt_input_uses_prompt() -> None:
    template = prompt_template(None, None, None, ["prompt"], "txt", "notes.txt")
    assert template.render({"prompt": "line"}) == "line"


def test_no_prompt_column_and_no_template() -> None:
    with pytest.raises(TemplateError) as info:
        prompt_template(None, None, None, ["id", "question"], "csv", "in.csv")
    message = info.value.message
    assert message.startswith("in.csv has no 'prompt' column (columns: id, question)")
    assert "-t/--template" in message
    assert "--prompt-column" in message


def test_no_prompt_field_jsonl_wording() -> None:
    with pytest.raises(TemplateError, match="<stdin> has no 'prompt' field"):
        prompt_template(None, None, None, ["q"], "jsonl", "<stdin>")
