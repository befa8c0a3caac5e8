"""context: the same 200-row job sharing a ~30,000-token document, with and without `--context`.

Without `--context` the document rides in `-s` (what users do today: every row pays for it as fresh
input); with `--context` gembulk counts it, finds that a cachedContents entry pays, and every request
names it; `--context --context-cache off` sends it first in every request instead (for reference: what
implicit caching could discount, at no guarantee). Answers are cut to 16 tokens so the three runs differ
only in how the shared part is billed. Cost is gembulk's own summary (the shipped prices: 2.5 Flash input
$0.30, cached $0.03, storage $1.00 per million per hour); wall is spawn to exit at a model latency of 0.3 s.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from bench.common import Fake, print_header, print_table, progress, run_gembulk, verdict, workdir

ROWS = 200
SHARED_TOKENS = 30_000  # the fake counts 4 characters a token
LATENCY = 0.3
TIMEOUT = 300.0
TARGET = 0.2  # the cached run costs at most a fifth of the run without --context
CLAUSE = "Clause: a ticket is classified by the first section whose condition it meets in full. "


def make_inputs(tmp: Path) -> tuple[Path, Path]:
    data = tmp / "tickets.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(1, ROWS + 1):
            writer.writerow([i, f"ticket {i}: the customer reports problem number {i}"])
    document = tmp / "policy.md"
    document.write_text(CLAUSE * (SHARED_TOKENS * 4 // len(CLAUSE)), encoding="utf-8")
    return data, document


def main() -> dict[str, Any]:
    print_header(
        "context",
        f"{ROWS} rows sharing a ~{SHARED_TOKENS:,}-token document, model latency {LATENCY:g} s, answers cut "
        "to 16 tokens: without --context (document in -s), with --context (cached), --context-cache off",
    )
    with workdir("context") as tmp, Fake("--latency", str(LATENCY)) as fake:
        data, document = make_inputs(tmp)
        text = document.read_text(encoding="utf-8")
        common = ("-t", "Which section applies to {text}?", "--max-output-tokens", "16")
        ways = [
            ("without --context (document in -s)", ("-s", text)),
            ("--context (auto: cached)", ("--context", str(document))),
            (
                "--context --context-cache off (inline)",
                ("--context", str(document), "--context-cache", "off"),
            ),
        ]
        rows: list[list[Any]] = []
        figures: dict[str, dict[str, Any]] = {}
        for label, extra in ways:
            fake.reset(settle=0)
            progress(label)
            run = run_gembulk(
                fake.url, data, *common, *extra, output=tmp / "out.jsonl", timeout=TIMEOUT
            ).check(label)
            summary, stats = run.summary(), fake.stats()
            figures[label] = {
                "cost": summary["cost_usd"],
                "wall": run.wall,
                "caches": stats["caches_created"],
            }
            rows.append(
                [
                    label,
                    summary["ok"],
                    f"${summary['cost_usd']:.4f}",
                    f"{summary['prompt_tokens']:,}",
                    f"{summary['cached_tokens']:,}",
                    stats["caches_created"],
                    run.wall,
                ]
            )
    print_table(["way", "ok", "cost", "prompt tokens", "cached tokens", "caches", "wall s"], rows)
    without, cached = (figures[label] for label, _ in ways[:2])
    ratio = cached["cost"] / without["cost"]
    ok = ratio <= TARGET and cached["caches"] == 1
    print(
        f"target: --context costs <= {TARGET:g} x the run without it -> ${cached['cost']:.4f} against "
        f"${without['cost']:.4f} ({ratio:.3f} x), wall {cached['wall']:.2f} s against "
        f"{without['wall']:.2f} s {verdict(ok)}"
    )
    return {
        "figures": figures,
        "checks": [
            {
                "metric": f"context: {ROWS} rows, ~{SHARED_TOKENS:,} shared tokens, cost",
                "target": f"<= {TARGET:g} x without --context",
                "gembulk": f"${cached['cost']:.4f} ({cached['wall']:.1f} s)",
                "baseline": f"${without['cost']:.4f} ({without['wall']:.1f} s)",
                "ratio": f"{ratio:.3f}",
                "verdict": verdict(ok),
            }
        ],
    }


if __name__ == "__main__":
    main()
