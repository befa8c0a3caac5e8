"""`gembulk fake-server`: the fake Gemini API served locally, for tests, benchmarks, demos and CI."""

from __future__ import annotations

from typing import Annotated

import typer

HELP = "Serve the fake Gemini API locally; prints its base URL as the first line."


def fake_server(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 0,
    latency: Annotated[float, typer.Option(help="Seconds added to each generateContent.")] = 0.0,
    jitter: Annotated[float, typer.Option(help="Up to this many extra seconds, uniformly.")] = 0.0,
    rpm: Annotated[int, typer.Option(help="Requests per window per key and model (0: unlimited).")] = 0,
    tpm: Annotated[int, typer.Option(help="Prompt tokens per window per key and model (0: unlimited).")] = 0,
    rpd: Annotated[int, typer.Option(help="Requests per day per key and model (0: unlimited).")] = 0,
    window: Annotated[float, typer.Option(help="Seconds of the rpm/tpm window (60 = real time).")] = 60.0,
    day: Annotated[float, typer.Option(help="Seconds of the rpd window.")] = 86400.0,
    error_rate: Annotated[float, typer.Option(help="Share of requests failing with 500/503/dropped.")] = 0.0,
    api_error_rate: Annotated[
        float, typer.Option(help="Share of Files/Batch API calls failing with 500/503.")
    ] = 0.0,
    bad_key: Annotated[list[str] | None, typer.Option(help="An API key to refuse (repeatable).")] = None,
    batch_pending: Annotated[float, typer.Option(help="Seconds a batch stays PENDING.")] = 1.0,
    batch_running: Annotated[float, typer.Option(help="Seconds a batch stays RUNNING.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed for faults and result shuffling.")] = 0,
    model: Annotated[
        list[str] | None, typer.Option(help="Another model name to accept (repeatable).")
    ] = None,
    lenient: Annotated[
        bool, typer.Option(help="Accept requests the real API refuses (no request validation).")
    ] = False,
    file_processing: Annotated[
        float, typer.Option(help="Seconds an uploaded video stays PROCESSING before it is ACTIVE.")
    ] = 1.0,
) -> None:
    from gembulk.fake import FakeConfig, serve

    serve(
        FakeConfig(
            host=host,
            port=port,
            latency=latency,
            jitter=jitter,
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            window=window,
            day=day,
            error_rate=error_rate,
            api_error_rate=api_error_rate,
            bad_keys=tuple(bad_key or ()),
            batch_pending=batch_pending,
            batch_running=batch_running,
            seed=seed,
            models=tuple(model or ()),
            lenient=lenient,
            file_processing=file_processing,
        )
    )
