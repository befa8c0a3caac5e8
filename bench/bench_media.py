"""media: 200 rows, each with an image URL whose download takes 0.5 s, at a model latency of 0.5 s.

gembulk (`--attach url`, default options) downloads in a bounded pool ahead of the workers, so the
downloads overlap the model calls. Baseline in the same run: a script that downloads a row's image,
then generates, row after row (`bench/baseline_media.py`), run on the first 20 rows and extrapolated
to 200 (clearly labelled); its serial sum is 200 x (0.5 + 0.5) = 200 s plus overheads.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    Fake,
    child_env,
    print_header,
    print_table,
    progress,
    run_gembulk,
    run_measured,
    verdict,
    workdir,
)
from tests.media_server import media_site

ROWS = 200
DOWNLOAD_DELAY = 0.5
LATENCY = 0.5
SERIAL_SAMPLE = 20
IMAGE_BYTES = 20_000
TARGET = 0.25  # "well under the serial sum": at most a quarter of it
TIMEOUT = 300.0


def make_input(path: Path, site_url: str) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt", "url"])
        for i in range(1, ROWS + 1):
            writer.writerow([i, f"describe picture {i}", f"{site_url}/img/{i}.png"])
    return path


def main() -> dict[str, Any]:
    serial_sum = ROWS * (DOWNLOAD_DELAY + LATENCY)
    print_header(
        "media",
        f"{ROWS} rows, each a URL image ({DOWNLOAD_DELAY:g} s to download), model latency {LATENCY:g} s: "
        f"serial sum {serial_sum:g} s",
    )
    with workdir("media") as tmp, Fake("--latency", str(LATENCY)) as fake, media_site() as site:
        site.delay = DOWNLOAD_DELAY
        for i in range(1, ROWS + 1):
            seed = hashlib.sha256(str(i).encode()).digest()
            site.add(f"/img/{i}.png", (seed * (IMAGE_BYTES // len(seed) + 1))[:IMAGE_BYTES])
        data = make_input(tmp / "in.csv", site.url)
        fake.reset(settle=0)
        progress("gembulk run --attach url (defaults)")
        # The media site is on 127.0.0.1: a private address, fetched only with --allow-private-urls.
        attach = ("--attach", "url", "--allow-private-urls")
        g = run_gembulk(fake.url, data, *attach, output=tmp / "out.jsonl", timeout=TIMEOUT)
        g.check("gembulk")
        g_stats = fake.stats()
        summary = g.summary()
        fake.reset(settle=0)
        progress(f"baseline: download then generate, row after row, first {SERIAL_SAMPLE} rows")
        cmd = [PYTHON, "-m", "bench.baseline_media", "--input", str(data), "--limit", str(SERIAL_SAMPLE)]
        b = run_measured(cmd, env=child_env(fake.url), timeout=TIMEOUT).check("serial baseline")
    result = b.result()
    scale = ROWS / SERIAL_SAMPLE
    inner = result.get("elapsed", 0.0)
    serial_wall = (b.wall - inner) + inner * scale  # start-up once, the rows scaled
    rows = [
        [
            "gembulk --attach url (defaults: -c 32, downloads as many)",
            summary.get("ok", 0),
            g.wall,
            summary.get("elapsed_s", float("nan")),
            g_stats["inline_parts"],
            g.wall / serial_sum,
        ],
        [
            f"download then generate, serial (extrapolated x{scale:g} from {SERIAL_SAMPLE} rows)",
            round(result.get("ok", 0) * scale),
            serial_wall,
            inner * scale,
            "-",
            serial_wall / serial_sum,
        ],
    ]
    print_table(["way", "ok", "wall s", "requests s", "images received", "x serial sum"], rows)
    ok = summary.get("ok") == ROWS and g.wall <= TARGET * serial_sum
    print(
        f"target: gembulk wall well under the serial sum ({serial_sum:g} s), <= {TARGET:g} x = "
        f"{TARGET * serial_sum:g} s -> {g.wall:.2f} s; serial baseline {serial_wall:.1f} s "
        f"(measured {b.wall:.2f} s for {SERIAL_SAMPLE} rows); speed-up {serial_wall / g.wall:.1f} x "
        f"{verdict(ok)}"
    )
    return {
        "gembulk_wall": g.wall,
        "gembulk_ok": summary.get("ok"),
        "serial_wall_extrapolated": serial_wall,
        "serial_sample_wall": b.wall,
        "checks": [
            {
                "metric": "media: 200 URL images, 0.5 s download + 0.5 s model, wall",
                "target": f"well under the serial {serial_sum:g} s",
                "gembulk": f"{g.wall:.2f} s",
                "baseline": f"{serial_wall:.0f} s (serial, extrap.)",
                "ratio": f"{g.wall / serial_wall:.3f}",
                "verdict": verdict(ok),
            }
        ],
    }


if __name__ == "__main__":
    main()
