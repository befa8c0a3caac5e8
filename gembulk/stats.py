"""Live counters of a run, written by the pipeline and read by progress observers, and how a run ended."""

from __future__ import annotations

from dataclasses import dataclass, field

from gembulk.errors import ExitCode, GembulkError
from gembulk.records import Usage


@dataclass
class RunStats:
    """Mutable tallies; the event loop is single-threaded, so plain attributes are enough."""

    total: int = 0  # rows in the input
    skipped: int = 0  # rows already finished by an earlier run (resume)
    ok: int = 0
    failed: int = 0
    requests: int = 0  # HTTP attempts sent
    retries: int = 0
    rate_limited: int = 0  # 429s received
    in_flight: int = 0
    concurrency: int = 0  # the adaptive limit right now
    max_concurrency: int = 0
    paused_until: float = 0.0  # monotonic time the pool cools down until
    learned_rpm: float | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    thoughts_tokens: int = 0
    total_tokens: int = 0
    failures_by_status: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0  # what the answers so far cost, at the price table's rates
    cost_known: bool = True  # False once an answer came from a model the price table does not know
    cache_hits: int = 0
    cached_tokens: int = 0  # prompt tokens read from a context cache (explicit or implicit)
    cache_saving_usd: float = 0.0  # what those tokens saved against fresh input
    cache_storage_usd: float = 0.0  # what keeping the run's context caches cost (counted in cost_usd)

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.skipped - self.done)

    def add_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        self.prompt_tokens += usage.prompt_tokens
        self.output_tokens += usage.output_tokens
        self.thoughts_tokens += usage.thoughts_tokens
        self.total_tokens += usage.total_tokens
        self.cached_tokens += usage.cached_tokens

    def add_failure(self, status: str) -> None:
        self.failed += 1
        self.failures_by_status[status] = self.failures_by_status.get(status, 0) + 1


@dataclass(frozen=True)
class RunResult:
    """How a run ended, for the CLI to turn into an exit code and for tests to inspect."""

    exit_code: ExitCode
    stats: RunStats
    elapsed: float
    error: GembulkError | None = None
    jobs: tuple[str, ...] = ()  # batch jobs submitted or adopted (--detach prints them on stdout)
