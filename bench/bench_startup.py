"""startup: what a shell one-liner pays before and around its work, with `import google.genai` beside it.

Each command runs REPEATS times as a fresh process (median wall time, from spawn to exit): `--version`,
`--help`, `run --help`, `batch --help` and a usage error, none of which may import google-genai or
aiohttp (target <= 150 ms), and a one-row `gembulk run` against the local fake (target <= 700 ms), beside
the bare interpreter and `python -c 'import google.genai'`, which a run cannot go below by much.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    Fake,
    child_env,
    gembulk_command,
    print_header,
    print_table,
    run_measured,
    verdict,
    workdir,
)

REPEATS = 7
LIGHT_TARGET = 0.150  # seconds: commands that must not import the SDK
RUN_TARGET = 0.700  # seconds: a one-row run against the local fake


def _median_wall(cmd: list[str], env: dict[str, str], expect: int = 0) -> float:
    walls = []
    for _ in range(REPEATS):
        measured = run_measured(cmd, env=env, timeout=60)
        if measured.returncode != expect:
            raise RuntimeError(f"{cmd} exited {measured.returncode}: {measured.stderr.strip()[-500:]}")
        walls.append(measured.wall)
    return statistics.median(walls)


def main() -> dict[str, Any]:
    print_header("startup", f"median wall of {REPEATS} fresh processes per command")
    gembulk = gembulk_command()
    figures: dict[str, Any] = {"checks": []}
    rows = []
    with workdir("startup") as tmp, Fake() as fake:
        env = child_env(fake.url)
        one_row = Path(tmp) / "one.csv"
        one_row.write_text("prompt\nhello\n", encoding="utf-8")
        cases = [
            ("python -c pass", [PYTHON, "-c", "pass"], 0, None),
            ("python -c 'import google.genai'", [PYTHON, "-c", "import google.genai"], 0, None),
            ("gembulk --version", [*gembulk, "--version"], 0, LIGHT_TARGET),
            ("gembulk --help", [*gembulk, "--help"], 0, LIGHT_TARGET),
            ("gembulk run --help", [*gembulk, "run", "--help"], 0, LIGHT_TARGET),
            ("gembulk batch --help", [*gembulk, "batch", "--help"], 0, LIGHT_TARGET),
            (
                "usage error (run x.csv --rpm -1)",
                [*gembulk, "run", str(one_row), "--rpm", "-1"],
                2,
                LIGHT_TARGET,
            ),
            (
                "one-row run",
                [*gembulk, "run", str(one_row), "-o", str(Path(tmp) / "out.jsonl"), "-q"],
                0,
                RUN_TARGET,
            ),
        ]
        genai_import = 0.0
        for name, cmd, expect, target in cases:
            if name == "one-row run":
                (Path(tmp) / "out.jsonl").unlink(missing_ok=True)
                cmd = [*cmd, "--overwrite"]
            wall = _median_wall(cmd, env, expect)
            ok = None if target is None else wall <= target
            rows.append(
                [name, f"{wall * 1000:.0f} ms", "-" if target is None else f"<= {target * 1000:.0f} ms"]
            )
            rows[-1].append("" if ok is None else verdict(ok))
            figures[name] = wall
            if name.startswith("python -c 'import"):
                genai_import = wall
            if target is not None:
                figures["checks"].append(
                    {
                        "metric": f"startup: {name}",
                        "target": f"<= {target * 1000:.0f} ms",
                        "gembulk": f"{wall * 1000:.0f} ms",
                        "baseline": f"{genai_import * 1000:.0f} ms (import google.genai)",
                        "ratio": "-",
                        "verdict": verdict(bool(ok)),
                    }
                )
    print_table(["command", "median wall", "target", "result"], rows)
    return figures


if __name__ == "__main__":
    main()
    sys.exit(0)
