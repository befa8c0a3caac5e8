"""The command line: options in, one call out, errors turned into one line and an exit code.

app             the `gembulk` command: subcommands put together, failures reported, main()
run_command     `gembulk run`: its options, panel by panel
run_help        the words of `gembulk run --help`: panels, examples, the longer option texts
run_options     those options checked and resolved into RunOptions (no Typer: testable alone)
batch_commands  `gembulk batch status|cancel|list|wait|fetch`
fake_command    `gembulk fake-server`
common          the exit-code help, shared options, logging and error lines
help            plain-text help with the options grouped by panel
"""

from gembulk.cli.app import app, main

__all__ = ["app", "main"]
