"""`make demo`: start the embedded fake Gemini API, run gembulk on samples/reviews.csv, show the results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "out" / "demo-reviews.jsonl"
GEMBULK = [sys.executable, "-m", "gembulk"]


def main() -> int:
    # A fake with real-looking latency and a quota of 10 requests a second (600 RPM), so the run shows
    # the pool adapting to the quota instead of storming it.
    fake = subprocess.Popen(
        [
            *GEMBULK,
            "fake-server",
            "--port",
            "0",
            "--latency",
            "0.4",
            "--jitter",
            "0.4",
            "--rpm",
            "10",
            "--window",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        print(f"fake Gemini API listening on {base_url}", file=sys.stderr)
        env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": base_url, "GEMINI_API_KEY": "demo-key"}
        OUT.parent.mkdir(exist_ok=True)
        command = [
            *GEMBULK,
            "run",
            str(HERE / "reviews.csv"),
            "--template-file",
            str(HERE / "template.txt"),
            "-o",
            str(OUT),
            "--overwrite",
            "--progress",
            "bar",
        ]
        print("$ gembulk " + " ".join(command[3:]), file=sys.stderr)
        code = subprocess.call(command, env=env)
        if code != 0:
            print(f"gembulk exited with {code}", file=sys.stderr)
            return code
        records = [json.loads(line) for line in OUT.read_text(encoding="utf-8").splitlines()]
        print(f"\n{len(records)} records in {OUT.relative_to(ROOT)}; the first three:")
        for record in sorted(records, key=lambda r: r["id"])[:3]:
            print(json.dumps(record, ensure_ascii=False, indent=2))
        return 0
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
