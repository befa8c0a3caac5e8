"""overhead: gembulk's own cost per request, at zero fake latency (the client is the bottleneck).

3,000 prompts, `gembulk run -c 64` vs a bare google-genai script (Semaphore(64) + gather over
client.aio.models.generate_content) against the same fake in the same run. Each is run twice,
interleaved, and the best of each counts (client and server share 2 cores, so runs are noisy).
requests/s is rows / the time spent sending them (gembulk's summary elapsed_s, the script's own
timer): the fixed start-up (interpreter, imports, gembulk's input scan) is shown apart, as
end-to-end rows / process wall time. gembulk also runs with stdout output (redirected to a file) beside
its file output (the aiofiles writer), to show the writer costs no throughput, and with --keep-order (file
output), which must cost at most 5 % of the file output's requests/s.
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

ROWS = 3_000
CONCURRENCY = 64
REPEATS = 2
TARGET = 0.9  # gembulk requests/s >= 0.9 x baseline's
KEEP_ORDER_TARGET = 0.95  # --keep-order requests/s >= 0.95 x the same run without it
TIMEOUT = 180.0


def main() -> dict[str, Any]:
    print_header(
        "overhead",
        f"{ROWS:,} prompts, zero fake latency, concurrency {CONCURRENCY}; best of {REPEATS} interleaved runs",
    )
    results: dict[str, list[dict[str, Any]]] = {"file": [], "stdout": [], "baseline": [], "keep": []}
    with workdir("overhead") as tmp, Fake() as fake:
        data = make_csv(tmp / "in.csv", ROWS)
        for attempt in range(1, REPEATS + 1):
            for kind in ("file", "keep", "baseline", "stdout"):
                fake.reset(settle=0)
                fake_cpu = fake.cpu_seconds()
                progress(f"run {attempt}/{REPEATS}: {kind}")
                if kind == "baseline":
                    m = run_baseline(fake.url, data, "--concurrency", str(CONCURRENCY), timeout=TIMEOUT)
                    m.check("baseline")
                    inner, ok = m.result().get("elapsed"), m.result().get("ok")
                else:
                    output = tmp / "out.jsonl" if kind in ("file", "keep") else None
                    stdout = tmp / "stdout.jsonl" if kind == "stdout" else None
                    extra = ["--keep-order"] if kind == "keep" else []
                    m = run_gembulk(
                        fake.url,
                        data,
                        "-c",
                        str(CONCURRENCY),
                        *extra,
                        output=output,
                        stdout=stdout,
                        timeout=TIMEOUT,
                    ).check(f"gembulk ({kind})")
                    summary = m.summary()
                    inner, ok = summary.get("elapsed_s"), summary.get("ok")
                stats = fake.stats()
                results[kind].append(
                    {
                        "wall": m.wall,
                        "inner": inner,
                        "ok": ok,
                        "rate": ROWS / inner if inner else 0.0,
                        "end_to_end": ROWS / m.wall,
                        "cpu": m.cpu,
                        "fake_cpu": fake.cpu_seconds() - fake_cpu,
                        "peak_in_flight": stats["peak_in_flight"],
                        "requests": stats["generate_requests"],
                    }
                )
    labels = {
        "file": f"gembulk -c {CONCURRENCY} -o FILE",
        "stdout": f"gembulk -c {CONCURRENCY} > FILE (stdout)",
        "keep": f"gembulk -c {CONCURRENCY} -o FILE --keep-order",
        "baseline": f"baseline Semaphore({CONCURRENCY})+gather",
    }
    rows = []
    for kind in ("file", "stdout", "keep", "baseline"):
        for i, r in enumerate(results[kind], 1):
            rows.append(
                [
                    f"{labels[kind]} #{i}",
                    r["ok"],
                    r["inner"],
                    r["rate"],
                    r["wall"],
                    r["end_to_end"],
                    r["cpu"],
                    r["fake_cpu"],
                    r["peak_in_flight"],
                ]
            )
    print_table(
        [
            "run",
            "ok",
            "requests s",
            "requests/s",
            "wall s",
            "rows/s end-to-end",
            "CPU s",
            "fake CPU s",
            "peak in flight",
        ],
        rows,
    )
    best = {kind: max(results[kind], key=lambda r: r["rate"]) for kind in results}
    ratio = best["file"]["rate"] / best["baseline"]["rate"]
    e2e_ratio = best["file"]["end_to_end"] / best["baseline"]["end_to_end"]
    stdout_ratio = best["stdout"]["rate"] / best["file"]["rate"]
    keep_ratio = best["keep"]["rate"] / best["file"]["rate"]
    ok = ratio >= TARGET
    ok_keep = keep_ratio >= KEEP_ORDER_TARGET
    print(
        f"best requests/s: gembulk (file) {best['file']['rate']:,.0f}, gembulk (stdout) "
        f"{best['stdout']['rate']:,.0f}, baseline {best['baseline']['rate']:,.0f}"
    )
    print(
        f"end-to-end rows/s (with start-up): gembulk {best['file']['end_to_end']:,.0f}, baseline "
        f"{best['baseline']['end_to_end']:,.0f} (ratio {e2e_ratio:.2f})"
    )
    print(f"stdout / file throughput: {stdout_ratio:.2f}")
    print(
        f"target: --keep-order / file requests/s >= {KEEP_ORDER_TARGET:g} -> {keep_ratio:.2f} "
        f"({best['keep']['rate']:,.0f} vs {best['file']['rate']:,.0f} req/s) {verdict(ok_keep)}"
    )
    print(f"target: gembulk / baseline requests/s >= {TARGET:g} -> {ratio:.2f} {verdict(ok)}")
    return {
        "runs": results,
        "gembulk_rps": best["file"]["rate"],
        "gembulk_stdout_rps": best["stdout"]["rate"],
        "baseline_rps": best["baseline"]["rate"],
        "ratio": ratio,
        "end_to_end_ratio": e2e_ratio,
        "stdout_over_file": stdout_ratio,
        "gembulk_keep_order_rps": best["keep"]["rate"],
        "keep_order_over_file": keep_ratio,
        "checks": [
            {
                "metric": "overhead: requests/s, 3,000 at 0 s, -c 64",
                "target": f">= {TARGET:g} x baseline",
                "gembulk": f"{best['file']['rate']:,.0f} req/s",
                "baseline": f"{best['baseline']['rate']:,.0f} req/s",
                "ratio": f"{ratio:.2f}",
                "verdict": verdict(ok),
            },
            {
                "metric": "overhead: --keep-order vs file output",
                "target": f">= {KEEP_ORDER_TARGET:g} x without",
                "gembulk": f"{best['keep']['rate']:,.0f} vs {best['file']['rate']:,.0f} req/s",
                "baseline": "-",
                "ratio": f"{keep_ratio:.2f}",
                "verdict": verdict(ok_keep),
            },
            {
                "metric": "overhead: stdout vs file output (info)",
                "target": "stdout ~ file",
                "gembulk": f"{best['stdout']['rate']:,.0f} vs {best['file']['rate']:,.0f} req/s",
                "baseline": "-",
                "ratio": f"{stdout_ratio:.2f}",
                "verdict": "-",
            },
        ],
    }


if __name__ == "__main__":
    main()
