"""latency: 1,000 prompts at 1 s fake latency, `gembulk run -c 100` vs the ideal 10 s.

Baseline in the same run: a bare google-genai script, asyncio.Semaphore(100) + gather over
client.aio.models.generate_content. Wall times are of the whole process (interpreter start, imports,
input scan and all), measured from spawn to exit; the time spent on the requests alone is shown too.
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    Fake,
    make_csv,
    print_header,
    print_table,
    progress,
    run_baseline,
    run_gembulk,
    verdict,
    workdir,
)

ROWS = 1_000
LATENCY = 1.0
CONCURRENCY = 100
IDEAL = ROWS / CONCURRENCY * LATENCY
TARGET = 1.10  # gembulk wall time <= 1.1 x ideal
TIMEOUT = 120.0


def main() -> dict[str, Any]:
    print_header(
        "latency",
        f"{ROWS:,} prompts, fake latency {LATENCY:g} s, concurrency {CONCURRENCY}: ideal {IDEAL:g} s",
    )
    rows = []
    figures: dict[str, Any] = {}
    with workdir("latency") as tmp, Fake("--latency", str(LATENCY)) as fake:
        data = make_csv(tmp / "in.csv", ROWS)
        fake.reset(settle=0)
        progress(f"gembulk run -c {CONCURRENCY}")
        g = run_gembulk(fake.url, data, "-c", str(CONCURRENCY), output=tmp / "out.jsonl", timeout=TIMEOUT)
        g.check("gembulk")
        g_stats = fake.stats()
        summary = g.summary()
        fake.reset(settle=0)
        progress(f"baseline: Semaphore({CONCURRENCY}) + gather")
        b = run_baseline(fake.url, data, "--concurrency", str(CONCURRENCY), timeout=TIMEOUT).check("baseline")
        b_stats = fake.stats()
        result = b.result()
    rows.append(
        [
            f"gembulk -c {CONCURRENCY}",
            g.wall,
            summary.get("elapsed_s", float("nan")),
            g.wall / IDEAL,
            summary.get("ok", 0),
            g_stats["generate_requests"],
            g_stats["peak_in_flight"],
            g.cpu,
        ]
    )
    rows.append(
        [
            f"baseline Semaphore({CONCURRENCY})+gather",
            b.wall,
            result.get("elapsed", float("nan")),
            b.wall / IDEAL,
            result.get("ok", 0),
            b_stats["generate_requests"],
            b_stats["peak_in_flight"],
            b.cpu,
        ]
    )
    print_table(["run", "wall s", "requests s", "x ideal", "ok", "requests", "peak in flight", "CPU s"], rows)
    ok = g.wall <= TARGET * IDEAL
    print(
        f"target: gembulk wall <= {TARGET:g} x ideal = {TARGET * IDEAL:g} s -> {g.wall:.2f} s "
        f"({g.wall / IDEAL:.3f} x; baseline {b.wall / IDEAL:.3f} x; gembulk/baseline {g.wall / b.wall:.3f}) "
        f"{verdict(ok)}"
    )
    figures.update(
        gembulk_wall=g.wall,
        gembulk_requests_s=summary.get("elapsed_s"),
        gembulk_ok=summary.get("ok"),
        gembulk_peak_in_flight=g_stats["peak_in_flight"],
        baseline_wall=b.wall,
        baseline_requests_s=result.get("elapsed"),
        baseline_ok=result.get("ok"),
        baseline_peak_in_flight=b_stats["peak_in_flight"],
        ideal=IDEAL,
        checks=[
            {
                "metric": "latency: wall, 1,000 x 1 s at -c 100",
                "target": f"<= {TARGET * IDEAL:g} s ({TARGET:g} x ideal)",
                "gembulk": f"{g.wall:.2f} s ({g.wall / IDEAL:.2f} x)",
                "baseline": f"{b.wall:.2f} s ({b.wall / IDEAL:.2f} x)",
                "ratio": f"{g.wall / b.wall:.2f}",
                "verdict": verdict(ok),
            }
        ],
    )
    return figures


if __name__ == "__main__":
    main()
