"""`python -m gembulk` runs the command line."""

from gembulk.cli import main

main()
