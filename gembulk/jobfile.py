"""The job identity stored beside an output file, so a re-run resumes only the job that wrote it."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from gembulk.errors import OutputConflictError
from gembulk.jsonfiles import write_json_atomic

SUFFIX = ".gembulk.json"
VERSION = 1


@dataclass(frozen=True)
class JobIdentity:
    """What makes two runs the same job: where the rows come from and how they are asked."""

    input: str  # absolute path of the input file, or "<stdin>" plus the content hash
    template: str
    model: str
    system: str | None
    generation: str  # canonical JSON of temperature, max output tokens and schema
    id_column: str | None
    shard: str | None = None  # "K/N" when only one shard of the rows is this job's

    def differences(self, other: JobIdentity) -> list[str]:
        mine, theirs = asdict(self), asdict(other)
        return [name for name in mine if mine[name] != theirs[name]]


def sidecar_path(output: str) -> str:
    return output + SUFFIX


def load(output: str) -> JobIdentity | None:
    path = sidecar_path(output)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return JobIdentity(**data["job"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputConflictError(
            f"{path}: unreadable job file ({exc})",
            hint="delete it to resume anyway, or pass --overwrite to start over",
        ) from exc


def check_same_job(output: str, identity: JobIdentity) -> None:
    """Refuse to resume an output that another job wrote."""
    stored = load(output)
    if stored is None or stored == identity:
        return
    labels = {
        "input": "input",
        "template": "template",
        "model": "model",
        "system": "system prompt",
        "generation": "generation settings",
        "id_column": "id column",
        "shard": "shard",
    }
    changed = ", ".join(labels[name] for name in stored.differences(identity))
    raise OutputConflictError(
        f"{output} holds results of a different job (changed: {changed})",
        hint="use another -o path, or pass --overwrite to replace it",
    )


def save(output: str, identity: JobIdentity, **extra: Any) -> None:
    """Write the sidecar atomically, so a crash never leaves half a file."""
    payload = {"version": VERSION, "job": asdict(identity), **extra}
    write_json_atomic(sidecar_path(output), payload, sort_keys=True)


def remove(output: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sidecar_path(output))
