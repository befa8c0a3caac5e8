"""Memory of reading Parquet: `gembulk run ROWS.parquet --dry-run` over 1,000,000 rows (peak RSS <= 200 MB).

Run: ``.venv/bin/python -m bench.bench_parquet [--rows N]`` (or through ``python -m bench``); needs the
parquet extra (pyarrow). A Parquet file of reviews (id, product, prompt of ~100 bytes) is written the way
pandas and pyarrow write by default: one row group of up to 1,048,576 rows, so a reader that took a row
group at a time would hold the whole file. `--dry-run` is the validating scan of every run (columns,
template, ids checked unique, rows counted) and sends no prompt (it asks the fake's countTokens for the
first rows' cost estimate). The same rows as a CSV are measured beside it, as a reference.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    ROOT,
    Fake,
    child_env,
    gembulk_command,
    print_header,
    print_table,
    progress,
    review_text,
    run_measured,
    verdict,
    workdir,
)

ROWS = 1_000_000
TARGET_MB = 200.0
TEMPLATE = "Classify the sentiment of this {product} review: {prompt}"


def make_inputs(directory: Path, rows: int) -> tuple[Path, Path]:
    """The same reviews as rows.parquet (pyarrow's defaults) and rows.csv, written by a child process:
    a child of this process would start from its high-water mark (ru_maxrss survives fork and exec)."""
    env = child_env()
    cmd = [PYTHON, "-m", "bench.bench_parquet", "--make", str(directory), str(rows)]
    made = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise RuntimeError(made.stderr.strip()[-1500:])
    return directory / "rows.parquet", directory / "rows.csv"


def _write_inputs(directory: Path, rows: int) -> None:
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError("pyarrow is not installed: pip install 'gembulk[parquet]'") from None
    rng = random.Random(7)
    table = pa.table(
        {
            "id": [f"r{i:07d}" for i in range(1, rows + 1)],
            "product": [rng.choice(("phone", "laptop", "kettle", "chair")) for _ in range(rows)],
            "prompt": [review_text(rng, 100) for _ in range(rows)],
        }
    )
    pq.write_table(table, directory / "rows.parquet")
    pa_csv.write_csv(table, directory / "rows.csv")


def dry_run(url: str, path: Path) -> dict[str, Any]:
    cmd = [*gembulk_command(), "run", str(path), "-t", TEMPLATE, "--dry-run", "--progress", "plain"]
    measured = run_measured(cmd, env=child_env(url), timeout=600).check(f"gembulk run {path.name} --dry-run")
    return {
        "wall_s": measured.wall,
        "peak_rss_mb": measured.peak_rss_mib,
        "maxrss_mb": measured.maxrss / 1024 / 1024,
        "size_mb": path.stat().st_size / 1e6,
    }


def main(rows: int = ROWS) -> dict[str, Any]:
    print_header(
        "parquet",
        f"`gembulk run ROWS.parquet --dry-run` over {rows:,} rows (one row group), "
        f"target peak RSS <= {TARGET_MB:.0f} MB",
    )
    with workdir("parquet") as directory, Fake() as fake:
        progress(f"writing {rows:,} rows as Parquet and CSV")
        parquet, csv = make_inputs(directory, rows)
        progress("gembulk run rows.parquet --dry-run")
        figures = {"rows": rows, "parquet": dry_run(fake.url, parquet)}
        progress("gembulk run rows.csv --dry-run (reference)")
        figures["csv"] = dry_run(fake.url, csv)
    print_table(
        ["input", "size MB", "wall s", "peak RSS MB", "kernel max RSS MB"],
        [
            [name, f["size_mb"], f["wall_s"], f["peak_rss_mb"], f["maxrss_mb"]]
            for name, f in (("Parquet", figures["parquet"]), ("CSV (reference)", figures["csv"]))
        ],
    )
    peak = max(figures["parquet"]["peak_rss_mb"], figures["parquet"]["maxrss_mb"])
    ok = peak <= TARGET_MB
    print(f"target: Parquet peak RSS <= {TARGET_MB:.0f} MB -> {peak:.0f} MB {verdict(ok)}")
    figures["checks"] = [
        {
            "metric": f"parquet: peak RSS, --dry-run over {rows:,} rows",
            "target": f"<= {TARGET_MB:.0f} MB",
            "gembulk": f"{peak:.0f} MB in {figures['parquet']['wall_s']:.1f}s",
            "baseline": f"CSV {figures['csv']['peak_rss_mb']:.0f} MB",
            "ratio": "-",
            "verdict": verdict(ok),
        }
    ]
    return figures


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_parquet", description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--make", nargs=2, metavar=("DIR", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make:
        _write_inputs(Path(args.make[0]), int(args.make[1]))
        return 0
    figures = main(args.rows)
    return 0 if figures["checks"][0]["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(_cli())
