"""Memory and time of building the Batch API input: 1,000,000 CSV rows into JSONL parts (peak RSS <= 200 MB).

Run: ``.venv/bin/python -m bench.bench_batch_build [--rows N]`` (or through ``python -m bench``).
A CSV with an id column is generated in a temporary directory; a child process then does what
``gembulk run IN.csv --batch`` does before its first upload: the validating scan of the whole input, and
the streaming build of the JSONL parts (template rendering, GenerateContentRequest JSON, splitting by
--batch-max-rows/--batch-max-bytes defaults). The child reports its own peak RSS (getrusage ru_maxrss,
the kernel's high-water mark, so no sample can miss a peak) and the time of each pass.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROWS = 1_000_000
TARGET_MB = 200.0
TEMPLATE = "Classify the sentiment of this {product} review as positive, negative or mixed:\n{review}"
WORDS = ("battery", "screen", "great", "poor", "value", "fast", "slow", "sturdy", "cheap", "lovely", "awful")


def make_csv(path: Path, rows: int) -> int:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "product", "review"])
        for i in range(rows):
            review = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(12))
            writer.writerow([f"r{i:07d}", ("phone", "laptop", "kettle")[i % 3], f"{review} ({i})"])
    return path.stat().st_size


async def _child(input_path: str, workdir: str) -> dict[str, Any]:
    """The build, as `gembulk run --batch` does it: scan (validation) pass, then the streaming build."""
    from gembulk.batch.build import build_parts
    from gembulk.client import GenerationSettings
    from gembulk.inputs import InputSpec, open_input, scan_input
    from gembulk.prompts import Template
    from gembulk.records import PromptRequest
    from gembulk.settings import DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_MAX_ROWS

    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    spec = InputSpec(path=input_path, format="csv")
    template = Template.parse(TEMPLATE)
    started = time.perf_counter()
    scan = await scan_input(spec, template.fields)
    scanned = time.perf_counter()

    async def requests():  # type: ignore[no-untyped-def]
        source = await open_input(spec, check_unique_ids=False)  # as prepare.py: the scan checked them
        try:
            async for row in source.rows():
                yield PromptRequest(row=row, prompt=template.render(row.fields), model="gemini-2.5-flash")
        finally:
            await source.aclose()

    parts = await build_parts(
        requests(),
        GenerationSettings(temperature=0.0, max_output_tokens=64),
        workdir,
        max_rows=DEFAULT_BATCH_MAX_ROWS,
        max_bytes=DEFAULT_BATCH_MAX_BYTES,
    )
    built = time.perf_counter()
    return {
        "rows": scan.row_count,
        "parts": len(parts),
        "jsonl_bytes": sum(p.bytes for p in parts),
        "scan_s": scanned - started,
        "build_s": built - scanned,
        "rss_after_imports_mb": rss_imports,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(rows: int = ROWS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gembulk-bench-batch-") as tmp:
        data = Path(tmp) / "in.csv"
        made = time.perf_counter()
        size = make_csv(data, rows)
        made = time.perf_counter() - made
        parts_dir = Path(tmp) / "parts"
        parts_dir.mkdir()
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        child = subprocess.run(
            [sys.executable, "-m", "bench.bench_batch_build", "--child", str(data), str(parts_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the build child failed:\n{child.stderr}")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
    return {**figures, "input_bytes": size, "make_input_s": made}


def main(rows: int = ROWS) -> dict[str, Any]:
    print()
    print("== batch_build ==")
    print(
        f"building the Batch API input for {rows:,} CSV rows (scan + JSONL parts), target peak RSS <= "
        f"{TARGET_MB:.0f} MB"
    )
    figures = measure(rows)
    total = figures["scan_s"] + figures["build_s"]
    ok = figures["peak_rss_mb"] <= TARGET_MB
    print(f"input: {figures['input_bytes'] / 1e6:,.1f} MB CSV, {figures['rows']:,} rows")
    print(
        f"output: {figures['parts']} JSONL part(s), {figures['jsonl_bytes'] / 1e6:,.1f} MB "
        f"(default --batch-max-rows / --batch-max-bytes)"
    )
    print(
        f"time: scan {figures['scan_s']:.1f}s + build {figures['build_s']:.1f}s = {total:.1f}s "
        f"({figures['rows'] / figures['build_s']:,.0f} rows/s built)"
    )
    print(
        f"peak RSS: {figures['peak_rss_mb']:.0f} MB "
        f"(after imports {figures['rss_after_imports_mb']:.0f} MB); "
        f"target <= {TARGET_MB:.0f} MB -> {'PASS' if ok else 'MISS'}"
    )
    figures["checks"] = [
        {
            "metric": f"batch build: peak RSS for {figures['rows']:,} rows",
            "target": f"<= {TARGET_MB:.0f} MB",
            "gembulk": f"{figures['peak_rss_mb']:.0f} MB in {total:.1f}s",
            "baseline": "-",
            "ratio": "-",
            "verdict": "PASS" if ok else "MISS",
        }
    ]
    return figures


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_batch_build", description=__doc__)
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--child", nargs=2, metavar=("CSV", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_child(*args.child))))
        return 0
    figures = main(args.rows)
    return 0 if figures["peak_rss_mb"] <= TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(_cli())
