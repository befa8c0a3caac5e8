"""`python -m gembulk.fake`: run the fake Gemini API; the first stdout line is its base URL."""

from __future__ import annotations

import argparse

from gembulk.fake.config import FakeConfig
from gembulk.fake.server import serve


def parse_args(argv: list[str] | None = None) -> FakeConfig:
    d = FakeConfig()
    p = argparse.ArgumentParser(prog="python -m gembulk.fake", description=__doc__)
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port, help="0 picks a free port")
    p.add_argument("--latency", type=float, default=d.latency, help="seconds added per request")
    p.add_argument("--jitter", type=float, default=d.jitter, help="uniform extra 0..JITTER seconds")
    p.add_argument(
        "--rpm", type=int, default=d.rpm, help="requests per window per key and model (0 = unlimited)"
    )
    p.add_argument("--tpm", type=int, default=d.tpm, help="prompt tokens per window per key and model")
    p.add_argument("--rpd", type=int, default=d.rpd, help="requests per day per key and model")
    p.add_argument("--window", type=float, default=d.window, help="seconds of the rpm/tpm window")
    p.add_argument("--day", type=float, default=d.day, help="seconds of the rpd window")
    p.add_argument("--error-rate", type=float, default=d.error_rate, help="share of 500/503/dropped answers")
    p.add_argument(
        "--api-error-rate", type=float, default=d.api_error_rate, help="share of 500/503 Files/Batch answers"
    )
    p.add_argument("--bad-key", action="append", default=[], help="an API key to reject (repeatable)")
    p.add_argument("--batch-pending", type=float, default=d.batch_pending)
    p.add_argument("--batch-running", type=float, default=d.batch_running)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--model", action="append", default=[], help="an extra accepted model name (repeatable)")
    p.add_argument(
        "--lenient", action="store_true", help="accept requests the real API refuses (no validation)"
    )
    p.add_argument(
        "--file-processing", type=float, default=d.file_processing, help="seconds a video stays PROCESSING"
    )
    a = p.parse_args(argv)
    return FakeConfig(
        host=a.host,
        port=a.port,
        latency=a.latency,
        jitter=a.jitter,
        rpm=a.rpm,
        tpm=a.tpm,
        rpd=a.rpd,
        window=a.window,
        day=a.day,
        error_rate=a.error_rate,
        api_error_rate=a.api_error_rate,
        bad_keys=tuple(a.bad_key),
        batch_pending=a.batch_pending,
        batch_running=a.batch_running,
        seed=a.seed,
        models=tuple(a.model),
        lenient=a.lenient,
        file_processing=a.file_processing,
    )


def main(argv: list[str] | None = None) -> None:
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
