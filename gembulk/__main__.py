"""`python -m gembulk` and the `gembulk` console script: the command line."""

from gembulk.startup import long_lived_objects


def main() -> None:
    with long_lived_objects():  # see gembulk/startup.py: ~35 ms at start-up, ~150 ms at exit
        from gembulk.cli import main as cli_main
    cli_main()


if __name__ == "__main__":
    main()
