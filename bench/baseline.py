"""The baselines: bare google-genai scripts, the way people write them without gembulk.

Run as ``python -m bench.baseline --input FILE.csv [--mode gather|sequential] [--concurrency N]
[--limit N] [--retry-attempts N]``; the endpoint comes from GOOGLE_GEMINI_BASE_URL and the key from
GEMINI_API_KEY (the bench sets both). It sends the `prompt` column of the CSV with
``client.aio.models.generate_content`` and prints one JSON line: ok, failed, error counts and the
elapsed time of the requests alone (the process wall time is measured by the caller).

- gather: ``asyncio.Semaphore(N)`` + ``asyncio.gather`` over every prompt (the usual pattern).
- sequential: one awaited call after another.

The client is built as the docs show: ``genai.Client(api_key=..., http_options=HttpOptions(base_url=...))``,
so the SDK picks its own transport (aiohttp, since it is installed) and, unless --retry-attempts is
given, does not retry. With --retry-attempts the SDK's own retry is on (``HttpRetryOptions(attempts=N)``:
exponential backoff with jitter that ignores the server's RetryInfo). Answers are kept in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from collections import Counter

from google import genai
from google.genai import errors, types

MODEL = "gemini-2.5-flash"


def read_prompts(path: str, limit: int | None) -> list[str]:
    with open(path, encoding="utf-8", newline="") as handle:
        prompts = [row["prompt"] for row in csv.DictReader(handle)]
    return prompts[:limit] if limit is not None else prompts


def make_client(retry_attempts: int | None) -> genai.Client:
    retry = types.HttpRetryOptions(attempts=retry_attempts) if retry_attempts else None
    http_options = types.HttpOptions(base_url=os.environ["GOOGLE_GEMINI_BASE_URL"], retry_options=retry)
    return genai.Client(api_key=os.environ["GEMINI_API_KEY"], http_options=http_options)


async def run(prompts: list[str], mode: str, concurrency: int, retry_attempts: int | None) -> dict:
    started = time.perf_counter()  # the client's construction counts, as gembulk's does
    client = make_client(retry_attempts)
    statuses: Counter[str] = Counter()
    answers: list[str | None] = []

    async def one(prompt: str) -> str | None:
        try:
            response = await client.aio.models.generate_content(model=MODEL, contents=prompt)
        except errors.APIError as exc:
            statuses[str(exc.code)] += 1
            return None
        except Exception as exc:  # a transport error: counted, the script goes on
            statuses[type(exc).__name__] += 1
            return None
        statuses["ok"] += 1
        return response.text

    if mode == "sequential":
        for prompt in prompts:
            answers.append(await one(prompt))
    else:
        semaphore = asyncio.Semaphore(concurrency)

        async def bounded(prompt: str) -> str | None:
            async with semaphore:
                return await one(prompt)

        answers = await asyncio.gather(*(bounded(p) for p in prompts))
    elapsed = time.perf_counter() - started
    await client.aio.aclose()
    ok = statuses.pop("ok", 0)
    return {
        "mode": mode,
        "concurrency": concurrency if mode == "gather" else 1,
        "prompts": len(prompts),
        "ok": ok,
        "failed": len(prompts) - ok,
        "errors": dict(statuses),
        "answers": sum(1 for a in answers if a),
        "elapsed": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--mode", choices=("gather", "sequential"), default="gather")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--retry-attempts", type=int)
    args = parser.parse_args(argv)
    prompts = read_prompts(args.input, args.limit)
    result = asyncio.run(run(prompts, args.mode, args.concurrency, args.retry_attempts))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
