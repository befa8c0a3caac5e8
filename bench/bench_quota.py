"""quota: 600 prompts against a fake that enforces 1,200 RPM over a 1 s window (20 requests in any second).

The fake runs with `--rpm 20 --window 1 --latency 0.1`, so the ideal is 600 / 20 = 30 s. Runs:
(a) gembulk with default options (it must learn the quota from the 429s: QuotaFailure + RetryInfo);
(b) gembulk with `--rpm 1200` (told the quota up front);
baseline: a naive script, Semaphore(32) + gather with the SDK's own retry
(`HttpRetryOptions(attempts=10)`: exponential backoff with jitter, ignoring RetryInfo).
The 429 share is the fake's rate_limited / generate_requests. The fake's counters are reset, and a
window left to pass, before each run.
"""

from __future__ import annotations

from typing import Any

from bench.common import (
    NAIVE_LABEL,
    Fake,
    make_csv,
    print_header,
    print_table,
    run_learned_and_told,
    run_naive_baseline,
    verdict,
    workdir,
)

ROWS = 600
PER_WINDOW = 20
WINDOW = 1.0
LATENCY = 0.1
RPM = PER_WINDOW * 60 / WINDOW  # 1,200
IDEAL = ROWS / PER_WINDOW * WINDOW  # 30 s
TIMEOUT = 420.0  # the naive baseline backs off up to 60 s per attempt

TARGETS = {
    "default": (1.15, 0.05),  # wall <= 1.15 x ideal, <= 5 % of requests answered 429
    "rpm": (1.05, 0.01),
}


def _row(name: str, wall: float, inner: Any, ok: Any, stats: dict[str, Any], cpu: float) -> list[Any]:
    requests = stats["generate_requests"]
    limited = stats["rate_limited"]
    share = limited / requests if requests else 0.0
    return [name, wall, inner, wall / IDEAL, ok, requests, limited, f"{100 * share:.1f} %", cpu]


def main() -> dict[str, Any]:
    print_header(
        "quota",
        f"{ROWS} prompts, fake quota {PER_WINDOW} requests per {WINDOW:g} s window "
        f"(announced as {RPM:,.0f} RPM), latency {LATENCY:g} s: ideal {IDEAL:g} s",
    )
    fake_args = ["--rpm", str(PER_WINDOW), "--window", str(WINDOW), "--latency", str(LATENCY)]
    with workdir("quota") as tmp, Fake(*fake_args) as fake:
        data = make_csv(tmp / "in.csv", ROWS)
        runs = run_learned_and_told(
            fake, data, "quota", ("rpm", ["--rpm", f"{RPM:g}"]), outputs=tmp, timeout=TIMEOUT
        )
        b, b_stats = run_naive_baseline(fake, data, "quota", timeout=TIMEOUT)
    if b.timed_out:
        print(f"(the baseline was stopped at its {TIMEOUT:g} s timeout)")
    result = b.result()
    rows = []
    for name, label in (("default", "gembulk (defaults)"), ("rpm", "gembulk --rpm 1200")):
        m, stats, summary = runs[name]
        rows.append(_row(label, m.wall, summary.get("elapsed_s", "-"), summary.get("ok", "-"), stats, m.cpu))
    rows.append(
        _row(
            f"baseline {NAIVE_LABEL}",
            b.wall,
            result.get("elapsed", "-"),
            result.get("ok", "-"),
            b_stats,
            b.cpu,
        )
    )
    print_table(
        ["run", "wall s", "requests s", "x ideal", "ok", "requests", "429s", "429 share", "CPU s"], rows
    )
    b_share = b_stats["rate_limited"] / max(1, b_stats["generate_requests"])
    checks = []
    figures: dict[str, Any] = {
        "ideal": IDEAL,
        "baseline_wall": b.wall,
        "baseline_ok": result.get("ok"),
        "baseline_429_share": b_share,
        "baseline_requests": b_stats["generate_requests"],
        "baseline_errors": result.get("errors"),
    }
    for name, label in (("default", "defaults"), ("rpm", "--rpm 1200")):
        m, stats, summary = runs[name]
        max_ratio, max_share = TARGETS[name]
        share = stats["rate_limited"] / max(1, stats["generate_requests"])
        ok_wall = m.wall <= max_ratio * IDEAL
        ok_share = share <= max_share
        print(
            f"target ({label}): wall <= {max_ratio:g} x ideal = {max_ratio * IDEAL:g} s -> {m.wall:.2f} s "
            f"{verdict(ok_wall)}; 429 share <= {100 * max_share:g} % -> {100 * share:.1f} % "
            f"{verdict(ok_share)}"
        )
        figures.update(
            {
                f"{name}_wall": m.wall,
                f"{name}_requests_s": summary.get("elapsed_s"),
                f"{name}_ok": summary.get("ok"),
                f"{name}_429_share": share,
                f"{name}_requests": stats["generate_requests"],
            }
        )
        checks.append(
            {
                "metric": f"quota ({label}): wall, 600 at 1,200 RPM",
                "target": f"<= {max_ratio * IDEAL:g} s ({max_ratio:g} x)",
                "gembulk": f"{m.wall:.2f} s ({m.wall / IDEAL:.2f} x)",
                "baseline": f"{b.wall:.2f} s ({b.wall / IDEAL:.2f} x)",
                "ratio": f"{m.wall / b.wall:.2f}",
                "verdict": verdict(ok_wall),
            }
        )
        checks.append(
            {
                "metric": f"quota ({label}): 429 share",
                "target": f"<= {100 * max_share:g} %",
                "gembulk": f"{100 * share:.1f} %",
                "baseline": f"{100 * b_share:.1f} %",
                "ratio": "-",
                "verdict": verdict(ok_share),
            }
        )
    figures["checks"] = checks
    return figures


if __name__ == "__main__":
    main()
