"""The media baseline: download a row's image, then generate, one row after the other (a plain script).

Run as ``python -m bench.baseline_media --input FILE.csv [--limit N]``: the CSV has `prompt` and `url`
columns; each URL is fetched with urllib and sent inline with the prompt through the sync google-genai
client. Prints one JSON line: ok, failed, elapsed (the requests alone).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import urllib.request

from google import genai
from google.genai import errors, types

MODEL = "gemini-2.5-flash"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args(argv)
    with open(args.input, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[: args.limit]
    started = time.perf_counter()
    http_options = types.HttpOptions(base_url=os.environ["GOOGLE_GEMINI_BASE_URL"])
    client = genai.Client(api_key=os.environ["GEMINI_API_KEY"], http_options=http_options)
    ok = 0
    for row in rows:
        with urllib.request.urlopen(row["url"], timeout=60) as answer:
            data = answer.read()
            mime = answer.headers.get_content_type()
        try:
            client.models.generate_content(
                model=MODEL, contents=[types.Part.from_bytes(data=data, mime_type=mime), row["prompt"]]
            )
            ok += 1
        except errors.APIError:
            pass
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": len(rows), "ok": ok, "failed": len(rows) - ok, "elapsed": elapsed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
