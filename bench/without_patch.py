"""The gembulk command line with one SDK speed patch left out, to measure what that patch saves.

    python -m bench.without_patch NAME -- <gembulk arguments>

NAME is a patch of gembulk/client/sdk_patches.py (several: comma-separated; "all": every one). Every
other patch is installed, as gembulk installs them, then the command line runs as `gembulk` would. A/B
one patch against the baseline with the benchmarks' BENCH_GEMBULK (bench/README.md), e.g.

    BENCH_GEMBULK="python -m bench.without_patch fast_membership --" make bench BENCH=overhead
"""

from __future__ import annotations

import sys
from typing import NoReturn

USAGE = "usage: python -m bench.without_patch NAME[,NAME...]|all -- <gembulk arguments>"


def main(argv: list[str] | None = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        sys.exit(USAGE)
    name, rest = args[0], args[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    from gembulk.startup import long_lived_objects

    with long_lived_objects():  # as gembulk's own entry point does for its imports
        from gembulk.__main__ import main as gembulk_main
        from gembulk.client import sdk_patches

    left_out = set(sdk_patches.ALL) if name == "all" else set(name.split(","))
    unknown = left_out - sdk_patches.ALL
    if unknown:
        sys.exit(f"unknown patch {', '.join(sorted(unknown))}; known: {', '.join(sorted(sdk_patches.ALL))}")
    sdk_patches.install(sdk_patches.ALL - left_out)
    sys.argv = ["gembulk", *rest]
    gembulk_main()


if __name__ == "__main__":
    main()
