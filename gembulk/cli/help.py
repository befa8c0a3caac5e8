"""Help text in plain lines: a command's options grouped under headings (their `rich_help_panel`).

Typer groups options into panels only when it renders help with rich; gembulk keeps rich to its progress
display and prints help as plain text, readable in a pipe, a log or a narrow terminal. This command class
gives that plain help the same grouping: arguments, then one section per panel in declaration order,
then the options that name no panel.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class PanelledCommand(TyperCommand):
    """A Typer command whose plain-text help lists its options panel by panel."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        panels: dict[str | None, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                panels.setdefault(getattr(param, "rich_help_panel", None), []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for title, records in panels.items():
            if title is not None:
                with formatter.section(title):
                    formatter.write_dl(records)
        if None in panels:
            with formatter.section("Options"):
                formatter.write_dl(panels[None])
