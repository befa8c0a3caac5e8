"""memory: peak RSS of the gembulk process over a 100,000-row and a 10,000-row CSV (zero fake latency).

Rows are realistic (id, product, ~100 bytes of review text); `gembulk run -c 64 -o FILE`. The RSS of the
gembulk process and any children it starts is sampled every 20 ms with psutil (the kernel's
high-water mark from wait4 is shown as a cross-check). Targets: the 100k peak <= 150 MB, and within 20 %
of the 10k peak (memory must not grow with the input). Time and rows/s are shown as well. The
baseline is the bare google-genai script (Semaphore(64) + gather over all rows, answers kept in a list)
on the same 10k and 100k rows: the usual pattern holds every coroutine and answer at once.

--keep-order: the 100k rows again with a few slow rows (the fake sleeps 3 s on each), once without and
once with --keep-order (records held behind a slow row, up to the 10,000 of the default --order-buffer).
Targets: its peak within the same 150 MB, and its rows/s at least 0.95 x the run without it.
"""

from __future__ import annotations

import json
from typing import Any

from bench.common import (
    Fake,
    MiB,
    count_lines,
    make_csv,
    print_header,
    print_table,
    progress,
    run_baseline,
    run_gembulk,
    verdict,
    workdir,
)

SIZES = (10_000, 100_000)
CONCURRENCY = 64
TARGET_MB = 150.0  # peak RSS of the 100k run, in MB (10^6 bytes)
TARGET_GROWTH = 0.20  # 100k peak within 20 % of the 10k peak
TIMEOUT = 900.0
SLOW_ROWS = {row: " [[sleep:3]]" for row in (10_000, 30_000, 50_000, 70_000, 90_000)}
KEEP_ORDER_TARGET = 0.95  # --keep-order rows/s >= 0.95 x the same slow-row run without it


def main() -> dict[str, Any]:
    print_header(
        "memory",
        f"peak RSS over {', '.join(f'{n:,}' for n in SIZES)}-row CSVs, zero fake latency, -c {CONCURRENCY}",
    )
    gembulk: dict[int, Any] = {}
    baseline: dict[int, Any] = {}
    with workdir("memory") as tmp, Fake() as fake:
        for rows in SIZES:
            data = make_csv(tmp / f"in-{rows}.csv", rows)
            size = data.stat().st_size
            fake.reset(settle=0)
            progress(f"gembulk: {rows:,} rows ({size / MiB:.1f} MiB of CSV)")
            out = tmp / f"out-{rows}.jsonl"
            m = run_gembulk(fake.url, data, "-c", str(CONCURRENCY), output=out, timeout=TIMEOUT)
            m.check(f"gembulk {rows:,} rows")
            m.extra.update(input_mib=size / MiB, records=count_lines(out), summary=m.summary())
            out.unlink()
            gembulk[rows] = m
            fake.reset(settle=0)
            progress(f"baseline: {rows:,} rows")
            b = run_baseline(fake.url, data, "--concurrency", str(CONCURRENCY), timeout=TIMEOUT)
            baseline[rows] = b.check(f"baseline {rows:,} rows")
        slow = _slow_rows_runs(tmp, fake)
    table = []
    for rows in SIZES:
        m = gembulk[rows]
        summary = m.extra["summary"]
        elapsed = summary.get("elapsed_s") or m.wall
        table.append(
            [
                f"gembulk {rows:,} rows",
                m.extra["records"],
                m.peak_rss_mib,
                m.maxrss / MiB,
                m.wall,
                rows / elapsed,
                rows / m.wall,
                m.samples,
            ]
        )
    for rows in SIZES:
        b = baseline[rows]
        result = b.result()
        table.append(
            [
                f"baseline gather {rows:,} rows",
                result.get("ok", 0),
                b.peak_rss_mib,
                b.maxrss / MiB,
                b.wall,
                rows / (result.get("elapsed") or b.wall),
                rows / b.wall,
                b.samples,
            ]
        )
    for label, m in slow.items():
        table.append(
            [
                label,
                m.extra["records"],
                m.peak_rss_mib,
                m.maxrss / MiB,
                m.wall,
                _rate(m),
                SIZES[-1] / m.wall,
                m.samples,
            ]
        )
    print_table(
        [
            "run",
            "records",
            "peak RSS MiB",
            "kernel maxrss MiB",
            "wall s",
            "rows/s (requests)",
            "rows/s end-to-end",
            "samples",
        ],
        table,
    )
    small, large = gembulk[SIZES[0]], gembulk[SIZES[-1]]
    peak_mb = large.peak_rss / 1e6
    growth = large.peak_rss / small.peak_rss - 1.0
    ok_peak = peak_mb <= TARGET_MB
    ok_growth = growth <= TARGET_GROWTH
    b_small, b_large = baseline[SIZES[0]], baseline[SIZES[-1]]
    keep, plain = slow["100,000 slow rows, --keep-order"], slow["100,000 slow rows"]
    keep_mb = keep.peak_rss / 1e6
    keep_ratio = _rate(keep) / _rate(plain)
    ok_keep_peak = keep_mb <= TARGET_MB
    ok_keep_rate = keep_ratio >= KEEP_ORDER_TARGET
    print(
        f"target: --keep-order with {len(SLOW_ROWS)} slow rows: peak <= {TARGET_MB:g} MB -> {keep_mb:.1f} MB "
        f"{verdict(ok_keep_peak)}; rows/s >= {KEEP_ORDER_TARGET:g} x without -> {keep_ratio:.2f} "
        f"({_rate(keep):,.0f} vs {_rate(plain):,.0f}) {verdict(ok_keep_rate)}"
    )
    print(
        f"target: 100k peak <= {TARGET_MB:g} MB -> {peak_mb:.1f} MB ({large.peak_rss_mib:.1f} MiB) "
        f"{verdict(ok_peak)}; growth 10k -> 100k <= {100 * TARGET_GROWTH:g} % -> {100 * growth:+.1f} % "
        f"{verdict(ok_growth)} (baseline: {b_small.peak_rss / 1e6:.1f} -> {b_large.peak_rss / 1e6:.1f} MB)"
    )
    return {
        "gembulk_peak_mb": {rows: gembulk[rows].peak_rss / 1e6 for rows in SIZES},
        "gembulk_maxrss_mb": {rows: gembulk[rows].maxrss / 1e6 for rows in SIZES},
        "gembulk_wall": {rows: gembulk[rows].wall for rows in SIZES},
        "baseline_peak_mb": {rows: baseline[rows].peak_rss / 1e6 for rows in SIZES},
        "baseline_wall": {rows: baseline[rows].wall for rows in SIZES},
        "growth": growth,
        "keep_order_peak_mb": keep_mb,
        "keep_order_rate_ratio": keep_ratio,
        "checks": [
            {
                "metric": "memory: peak RSS, 100k rows",
                "target": f"<= {TARGET_MB:g} MB",
                "gembulk": f"{peak_mb:.1f} MB",
                "baseline": f"{b_large.peak_rss / 1e6:.1f} MB",
                "ratio": f"{large.peak_rss / b_large.peak_rss:.2f}",
                "verdict": verdict(ok_peak),
            },
            {
                "metric": "memory: peak growth 10k -> 100k rows",
                "target": f"<= +{100 * TARGET_GROWTH:g} %",
                "gembulk": f"{100 * growth:+.1f} %",
                "baseline": f"{100 * (b_large.peak_rss / b_small.peak_rss - 1):+.1f} %",
                "ratio": "-",
                "verdict": verdict(ok_growth),
            },
            {
                "metric": f"memory: peak RSS, 100k rows, --keep-order, {len(SLOW_ROWS)} slow rows",
                "target": f"<= {TARGET_MB:g} MB",
                "gembulk": f"{keep_mb:.1f} MB",
                "baseline": f"{plain.peak_rss / 1e6:.1f} MB without --keep-order",
                "ratio": f"{keep.peak_rss / plain.peak_rss:.2f}",
                "verdict": verdict(ok_keep_peak),
            },
            {
                "metric": f"memory: rows/s, 100k rows, --keep-order, {len(SLOW_ROWS)} slow rows",
                "target": f">= {KEEP_ORDER_TARGET:g} x without",
                "gembulk": f"{_rate(keep):,.0f} rows/s",
                "baseline": f"{_rate(plain):,.0f} rows/s without --keep-order",
                "ratio": f"{keep_ratio:.2f}",
                "verdict": verdict(ok_keep_rate),
            },
        ],
    }


def _rate(m: Any) -> float:
    """Rows per second of the requests (gembulk's own elapsed_s)."""
    return SIZES[-1] / (m.extra["summary"].get("elapsed_s") or m.wall)


def _slow_rows_runs(tmp: Any, fake: Fake) -> dict[str, Any]:
    """The 100k rows with a few slow ones, without and with --keep-order (records checked in order)."""
    rows = SIZES[-1]
    data = make_csv(tmp / "in-slow.csv", rows, markers=SLOW_ROWS)
    runs: dict[str, Any] = {}
    for label, extra in (("100,000 slow rows", []), ("100,000 slow rows, --keep-order", ["--keep-order"])):
        fake.reset(settle=0)
        progress(f"gembulk: {label}")
        out = tmp / "out-slow.jsonl"
        m = run_gembulk(fake.url, data, "-c", str(CONCURRENCY), *extra, output=out, timeout=TIMEOUT)
        m.check(f"gembulk {label}")
        m.extra.update(records=count_lines(out), summary=m.summary())
        if extra:
            with open(out, encoding="utf-8") as handle:
                ids = [json.loads(line)["id"] for line in handle]
            if ids != sorted(ids):
                raise RuntimeError("--keep-order wrote records out of input order")
        out.unlink()
        runs[label] = m
    return runs


if __name__ == "__main__":
    main()
