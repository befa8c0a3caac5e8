"""End to end: jobs bound by the input-token quota, against the fake's TPM (one token per 4 UTF-8 bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gembulk.fake import count_tokens
from gembulk.tokens import estimate_tokens
from tests.cli_support import FakeAPI, read_jsonl, run_cli, write_csv

PHRASES = ("本季度收入均有增长", "顾客称赞新的结账流程", "配送センターの稼働🙂", "目標を達成した✅")


def cjk_rows(tmp_path: Path, rows: int) -> tuple[Path, int]:
    """Prompts of 40-60 tokens as the fake counts them, ~3x what four characters a token guesses."""
    data = []
    for i in range(rows):
        text = ""
        while count_tokens(text) < 40 + (i * 7) % 20:
            text += PHRASES[(i + len(text)) % len(PHRASES)]
        data.append({"id": f"r{i:03d}", "prompt": text})
    counted = sum(count_tokens(r["prompt"]) for r in data)
    assert counted > 2.5 * sum(estimate_tokens(r["prompt"]) for r in data)
    return write_csv(tmp_path / "cjk.csv", data), counted


@pytest.mark.timing(alone=True)
def test_a_tpm_bound_job_with_tpm_meets_almost_no_429(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(tpm=300, latency=0.05)  # 300 prompt tokens per 1-second window: 18,000 TPM
    path, tokens = cjk_rows(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(path), "-o", str(out), "--tpm", "18000", "-c", "8"], fake.url)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == 20 and all(r["error"] is None for r in records)
    assert sum(r["usage"]["prompt_tokens"] for r in records) == tokens
    stats = fake.stats()
    assert stats["rate_limited"] <= 1, stats
    # countTokens calibrated the first prompts before their answers, and no more than a few
    assert 1 <= stats["count_tokens_requests"] <= 3


@pytest.mark.timing(alone=True)
def test_a_tpm_bound_job_learns_the_token_quota_from_the_first_429s(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(tpm=300, latency=0.05)
    path, _ = cjk_rows(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(path), "-o", str(out), "-c", "8"], fake.url)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out)) == 20
    stats = fake.stats()
    # The first wave (8 requests, unpaced) overfills the window; after that, tokens are paced.
    assert stats["rate_limited"] <= 8, stats
    assert stats["requests_by_status"]["200"] == 20
