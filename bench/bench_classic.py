"""classic: 100 prompts at 1 s fake latency, the three ways people run them.

(a) a sequential loop of client.aio.models.generate_content calls: run on the first 20 prompts and
    extrapolated to 100 (clearly labelled), to keep the benchmark short;
(b) asyncio.Semaphore(10) + gather over the 100 prompts;
(c) `gembulk run` with default options (concurrency 32).
Wall times are of the whole process (start-up included); the time of the requests alone is shown too.
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
    workdir,
)

ROWS = 100
LATENCY = 1.0
SEQUENTIAL_SAMPLE = 20
TIMEOUT = 120.0


def main() -> dict[str, Any]:
    print_header("classic", f"{ROWS} prompts, fake latency {LATENCY:g} s")
    with workdir("classic") as tmp, Fake("--latency", str(LATENCY)) as fake:
        data = make_csv(tmp / "in.csv", ROWS)
        fake.reset(settle=0)
        progress(f"sequential loop over the first {SEQUENTIAL_SAMPLE} prompts")
        seq = run_baseline(fake.url, data, "--mode", "sequential", limit=SEQUENTIAL_SAMPLE, timeout=TIMEOUT)
        seq.check("sequential loop")
        fake.reset(settle=0)
        progress("Semaphore(10) + gather")
        sem = run_baseline(fake.url, data, "--concurrency", "10", timeout=TIMEOUT).check("Semaphore(10)")
        fake.reset(settle=0)
        progress("gembulk run (defaults)")
        g = run_gembulk(fake.url, data, output=tmp / "out.jsonl", timeout=TIMEOUT).check("gembulk")
    seq_result, sem_result, summary = seq.result(), sem.result(), g.summary()
    scale = ROWS / SEQUENTIAL_SAMPLE
    seq_inner = seq_result.get("elapsed", 0.0)
    startup = seq.wall - seq_inner  # interpreter, imports: paid once, not per prompt
    seq_wall = startup + seq_inner * scale
    seq_inner_100 = seq_inner * scale
    rows = [
        [
            f"(a) sequential loop (extrapolated x{scale:g} from {SEQUENTIAL_SAMPLE} prompts)",
            round(seq_result.get("ok", 0) * scale),
            seq_wall,
            seq_inner_100,
            ROWS / seq_inner_100,
            1.0,
        ],
        [
            "(b) Semaphore(10) + gather",
            sem_result.get("ok", 0),
            sem.wall,
            sem_result.get("elapsed", 0.0),
            ROWS / sem.wall,
            seq_wall / sem.wall,
        ],
        [
            "(c) gembulk run (defaults, -c 32)",
            summary.get("ok", 0),
            g.wall,
            summary.get("elapsed_s", 0.0),
            ROWS / g.wall,
            seq_wall / g.wall,
        ],
    ]
    print_table(["way", "ok", "wall s", "requests s", "rows/s", "speed-up vs (a)"], rows)
    print(
        f"(a) measured: {SEQUENTIAL_SAMPLE} prompts in {seq.wall:.2f} s wall "
        f"({seq_inner:.2f} s of requests); the 100-prompt figures are extrapolated"
    )
    return {
        "sequential_wall_extrapolated": seq_wall,
        "sequential_sample_wall": seq.wall,
        "semaphore10_wall": sem.wall,
        "gembulk_wall": g.wall,
        "gembulk_requests_s": summary.get("elapsed_s"),
        "checks": [
            {
                "metric": "classic: 100 x 1 s, wall (info)",
                "target": "-",
                "gembulk": f"{g.wall:.2f} s",
                "baseline": f"{sem.wall:.2f} s (sem 10); {seq_wall:.0f} s (seq, extrap.)",
                "ratio": f"{g.wall / sem.wall:.2f}",
                "verdict": "-",
            }
        ],
    }


if __name__ == "__main__":
    main()
