"""tokens: a job bound by the input-token quota (TPM), not by requests, against a 1 s and a 60 s window.

The fake runs with `--tpm 600 --rpm 50 --window 1 --latency 0.1`: 600 prompt tokens and 50 requests in
any second, announced as 36,000 TPM and 3,000 RPM, so tokens bind and requests never do. The fake
counts one token per 4 UTF-8 bytes, gembulk estimates four characters a token: a few accented letters
make the estimate ~1 % low, CJK text ~3x low. Two inputs of 240 uneven prompts (40-150 tokens):
English summaries with a few accented words, and Chinese and Japanese with emoji. Each runs
(a) with gembulk's defaults (it learns the quota from the first 429), (b) with `--tpm 36000`, and the
bare-SDK baseline (Semaphore(32) + gather with the SDK's own retry, which ignores RetryInfo). The
ideal is the prompt tokens the fake counts / 600 per second.

`python -m bench.bench_tokens --minute` runs the same English job against a 60 s window instead
(`--tpm 6000 --window 60`, latency 0.5 s): RetryInfo delays of tens of seconds. It takes ~5 minutes
and is not part of `make bench`.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    Fake,
    print_header,
    print_table,
    run_learned_and_told,
    run_naive_baseline,
    verdict,
    workdir,
)
from gembulk.fake import count_tokens

TOKENS_PER_WINDOW = 600
REQUESTS_PER_WINDOW = 50
WINDOW = 1.0
LATENCY = 0.1
TPM = TOKENS_PER_WINDOW * 60 / WINDOW  # 36,000
TIMEOUT = 400.0
HEADERS = ["run", "wall s", "requests s", "x ideal", "ok", "requests", "429s", "429 share"]
TARGETS = {"default": (1.15, 0.05), "tpm": (1.10, 0.02)}  # wall <= x ideal, 429 share <= y

_ENGLISH = (
    "The quarterly report shows revenue grew in every region except the north",
    "customers praised the new checkout flow but asked for clearer delivery dates",
    "the team moved the launch to spring after the supplier missed two deadlines",
    "support tickets fell by a third once the help pages were rewritten",
    "the board asked for a cost review before approving the second warehouse",
    "several reviewers compared the blender favourably with last year's model",
    "the pilot in three cities met its targets for sign-ups and retention",
    "shipping costs rose sharply while average basket size stayed flat",
)
_ACCENTED = ("café", "Düsseldorf", "résumé", "Zürich", "São Tomé", "Malmö", "crème brûlée", "Curaçao")
_CJK = (
    "本季度报告显示除北部地区外所有地区的收入均有增长",
    "顾客称赞新的结账流程但希望送货日期更加清晰",
    "供应商两次错过期限后团队将发布推迟到春季",
    "帮助页面重写后支持工单减少了三分之一",
    "新しい配送センターの稼働により平均配達時間が短縮されました",
    "利用者アンケートでは操作画面が分かりやすいという声が多数寄せられました",
    "来期の予算案について取締役会で追加の検討が求められています",
    "三つの都市で実施した試験運用は登録数と継続率の目標を達成した",
)
_NAMES = ("Renée", "José", "Zoë", "Łukasz", "Håkon", "Inês", "Noël", "Søren")
_EMOJI = ("🙂", "📦", "🚚", "✅", "📈", "🎉")


def _english(rng: random.Random, size: int) -> str:
    parts = ["Summarise this note in one sentence:"]
    while len(" ".join(parts).encode()) < size:
        sentence = rng.choice(_ENGLISH)
        sentence += f" at the {rng.choice(_ACCENTED)} office, said {rng.choice(_NAMES)}"
        parts.append(sentence + ".")
    return " ".join(parts)[:size]


def _cjk(rng: random.Random, size: int) -> str:
    text = "请用一句话总结："
    while len(text.encode()) < size:
        text += rng.choice(_CJK) + ("。" if rng.random() < 0.7 else rng.choice(_EMOJI))
    while len(text.encode()) > size:
        text = text[:-1]
    return text


def make_input(path: Path, rows: int, kind: str, seed: int = 11) -> int:
    """A CSV (id, prompt) of prompts of 40-150 fake tokens; returns the prompt tokens the fake counts."""
    rng = random.Random(seed)
    make = _english if kind == "english" else _cjk
    total = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt"])
        for i in range(1, rows + 1):
            prompt = make(rng, rng.randint(40, 150) * 4)
            total += count_tokens(prompt)
            writer.writerow([f"t{i:04d}", prompt])
    return total


def _share(stats: dict[str, Any]) -> float:
    return stats["rate_limited"] / max(1, stats["generate_requests"])


def _run_set(fake: Fake, tmp: Path, kind: str, rows: int, per_second: float) -> dict[str, Any]:
    data = tmp / f"{kind}.csv"
    tokens = make_input(data, rows, kind)
    told = ("tpm", ["--tpm", f"{per_second * 60:g}"])
    runs = run_learned_and_told(fake, data, kind, told, outputs=tmp, timeout=TIMEOUT)
    return {"ideal": tokens / per_second, "tokens": tokens, **runs}


def _report(kind: str, runs: dict[str, Any], baseline: tuple[Any, dict[str, Any]] | None) -> list[dict]:
    ideal = runs["ideal"]
    rows = []
    for name, label in (("default", "gembulk (defaults)"), ("tpm", f"gembulk --tpm {TPM:g}")):
        m, stats, summary = runs[name]
        share = f"{100 * _share(stats):.1f} %"
        rows.append([label, m.wall, summary.get("elapsed_s", "-"), m.wall / ideal, summary.get("ok", "-")])
        rows[-1] += [stats["generate_requests"], stats["rate_limited"], share, m.cpu]
    if baseline is not None:
        b, b_stats = baseline
        result = b.result()
        rows.append(["baseline (bare SDK)", b.wall, result.get("elapsed", "-"), b.wall / ideal])
        rows[-1] += [result.get("ok", "-"), b_stats["generate_requests"], b_stats["rate_limited"]]
        rows[-1] += [f"{100 * _share(b_stats):.1f} %", b.cpu]
    print(f"\n{kind}: {runs['tokens']:,} prompt tokens as the fake counts them, ideal {ideal:.1f} s")
    print_table([*HEADERS, "CPU s"], rows)
    checks = []
    for name, label in (("default", "defaults"), ("tpm", f"--tpm {TPM:g}")):
        m, stats, _ = runs[name]
        max_ratio, max_share = TARGETS[name]
        ok_wall, ok_share = m.wall <= max_ratio * ideal, _share(stats) <= max_share
        print(
            f"target ({kind}, {label}): wall <= {max_ratio:g} x ideal = {max_ratio * ideal:.1f} s -> "
            f"{m.wall:.2f} s {verdict(ok_wall)}; 429 share <= {100 * max_share:g} % -> "
            f"{100 * _share(stats):.1f} % {verdict(ok_share)}"
        )
        b_wall = baseline[0].wall if baseline is not None else float("nan")
        b_share = _share(baseline[1]) if baseline is not None else float("nan")
        checks.append(
            {
                "metric": f"tokens ({kind}, {label}): wall",
                "target": f"<= {max_ratio * ideal:.1f} s ({max_ratio:g} x)",
                "gembulk": f"{m.wall:.2f} s ({m.wall / ideal:.2f} x)",
                "baseline": f"{b_wall:.2f} s ({b_wall / ideal:.2f} x)",
                "ratio": f"{m.wall / b_wall:.2f}",
                "verdict": verdict(ok_wall),
            }
        )
        checks.append(
            {
                "metric": f"tokens ({kind}, {label}): 429 share",
                "target": f"<= {100 * max_share:g} %",
                "gembulk": f"{100 * _share(stats):.1f} % ({stats['rate_limited']} 429s)",
                "baseline": f"{100 * b_share:.1f} %",
                "ratio": "-",
                "verdict": verdict(ok_share),
            }
        )
    return checks


def _figures(kind: str, runs: dict[str, Any], baseline: tuple[Any, dict[str, Any]] | None) -> dict[str, Any]:
    figures: dict[str, Any] = {f"{kind}_ideal": runs["ideal"], f"{kind}_tokens": runs["tokens"]}
    for name in ("default", "tpm"):
        m, stats, summary = runs[name]
        figures[f"{kind}_{name}_wall"] = m.wall
        figures[f"{kind}_{name}_requests_s"] = summary.get("elapsed_s")
        figures[f"{kind}_{name}_429_share"] = _share(stats)
        figures[f"{kind}_{name}_requests"] = stats["generate_requests"]
    if baseline is not None:
        figures[f"{kind}_baseline_wall"] = baseline[0].wall
        figures[f"{kind}_baseline_429_share"] = _share(baseline[1])
        figures[f"{kind}_baseline_ok"] = baseline[0].result().get("ok")
    return figures


def second_window(baselines: bool = True) -> dict[str, Any]:
    print_header(
        "tokens",
        f"fake quota {TOKENS_PER_WINDOW} prompt tokens and {REQUESTS_PER_WINDOW} requests per {WINDOW:g} s "
        f"window (announced as {TPM:,.0f} TPM, 3,000 RPM), latency {LATENCY:g} s",
    )
    fake_args = ["--tpm", str(TOKENS_PER_WINDOW), "--rpm", str(REQUESTS_PER_WINDOW)]
    fake_args += ["--window", str(WINDOW), "--latency", str(LATENCY)]
    figures: dict[str, Any] = {"checks": []}
    with workdir("tokens") as tmp, Fake(*fake_args) as fake:
        for kind, rows in (("english", 240), ("cjk", 240)):
            runs = _run_set(fake, tmp, kind, rows, TOKENS_PER_WINDOW / WINDOW)
            baseline = (
                run_naive_baseline(fake, tmp / f"{kind}.csv", kind, timeout=TIMEOUT) if baselines else None
            )
            figures["checks"] += _report(kind, runs, baseline)
            figures.update(_figures(kind, runs, baseline))
    return figures


def minute_window() -> dict[str, Any]:
    """The English job against a real-length window: 6,000 tokens per 60 s, latency 0.5 s."""
    per_window, window = 6000, 60.0
    print_header(
        "tokens (60 s window)",
        f"fake quota {per_window:,} prompt tokens per {window:g} s window, latency 0.5 s, 120 prompts",
    )
    fake_args = ["--tpm", str(per_window), "--window", str(window), "--latency", "0.5"]
    with workdir("tokens-minute") as tmp, Fake(*fake_args) as fake:
        runs = _run_set(fake, tmp, "english", 120, per_window / window)
    ideal = runs["ideal"]
    rows = []
    for name in ("default", "tpm"):
        m, stats, summary = runs[name]
        rows.append([name, m.wall, summary.get("elapsed_s", "-"), m.wall / ideal, summary.get("ok", "-")])
        rows[-1] += [stats["generate_requests"], stats["rate_limited"], f"{100 * _share(stats):.1f} %"]
    print(f"{runs['tokens']:,} prompt tokens; ideal {ideal:.1f} s at {per_window / window:g} tokens/s")
    print_table(HEADERS, rows)
    return _figures("minute", runs, None)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_tokens", description=__doc__.splitlines()[0])
    parser.add_argument("--minute", action="store_true", help="the 60 s window scenario instead")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare-SDK baselines")
    args = parser.parse_args(argv or [])
    if args.minute:
        return minute_window()
    return second_window(baselines=not args.no_baseline)


if __name__ == "__main__":
    main(sys.argv[1:])
