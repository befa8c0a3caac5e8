"""`python -m bench [NAME ...] [--json PATH]`: run the benchmarks (all, in order, or the named ones)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import re
import sys
import time
import traceback
from typing import Any

from bench import available
from bench.common import print_header, print_table, verdict

FAKE_TARGET = 1_500.0  # requests/s of the fake under the raw-HTTP load client


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy, to read figures out of a benchmark that only prints."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.target.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def run_fake() -> dict[str, Any]:
    """bench/bench_fake.py (the raw-HTTP throughput benchmark of the fake) with its defaults."""
    module = importlib.import_module("bench.bench_fake")
    print_header(
        "fake",
        f"bench/bench_fake.py: raw keep-alive HTTP load on the fake (target >= {FAKE_TARGET:,.0f} req/s)",
    )
    takes_argv = bool(inspect.signature(module.main).parameters)
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        status = module.main([]) if takes_argv else module.main()  # [] : not our own command line
    if isinstance(status, dict):
        return status
    found = re.search(r"throughput:\s*([\d,.]+)\s*requests/s", tee.copy.getvalue())
    rate = float(found.group(1).replace(",", "")) if found else float("nan")
    ok = found is not None and rate >= FAKE_TARGET
    print(f"target: fake throughput >= {FAKE_TARGET:,.0f} req/s -> {rate:,.0f} req/s {verdict(ok)}")
    return {
        "requests_per_s": rate,
        "exit_status": status,
        "checks": [
            {
                "metric": "fake: raw-HTTP throughput",
                "target": f">= {FAKE_TARGET:,.0f} req/s",
                "gembulk": f"{rate:,.0f} req/s (fake)",
                "baseline": "-",
                "ratio": "-",
                "verdict": verdict(ok),
            }
        ],
    }


def run_one(name: str) -> dict[str, Any]:
    if name == "fake":
        return run_fake()
    module = importlib.import_module(f"bench.bench_{name}")
    return module.main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    known = available()
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(known)}")
    parser.add_argument("--json", metavar="PATH", help="also write every benchmark's figures here")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(known)})")
    names = args.names or known
    results: dict[str, Any] = {}
    failed = []
    started = time.monotonic()
    for name in names:
        began = time.monotonic()
        try:
            results[name] = run_one(name)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
        results[name]["bench_seconds"] = round(time.monotonic() - began, 1)
    checks = [c for r in results.values() for c in r.get("checks", [])]
    print_header("summary", f"{len(names)} benchmark(s) in {time.monotonic() - started:.0f} s")
    print_table(
        ["metric", "target", "gembulk", "baseline", "gembulk/baseline", "result"],
        [[c["metric"], c["target"], c["gembulk"], c["baseline"], c["ratio"], c["verdict"]] for c in checks]
        + [[f"{n}: did not run", "-", "-", "-", "-", "ERROR"] for n in failed],
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
