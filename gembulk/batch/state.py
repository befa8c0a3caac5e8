"""The batch state file beside OUT: what was submitted and how to rebuild its records; written atomically."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from gembulk.errors import StateFileError
from gembulk.jsonfiles import write_json_atomic
from gembulk.outputs.target import TEMP_SUFFIX, temp_prefix

SUFFIX = ".gembulk-batch.json"
INPUT_SUFFIX = ".gembulk-batch.input"  # the kept copy of a stdin input, for batch wait/fetch
KIND = "gembulk-batch-state"
VERSION = 1
JOB_PREFIX = "batches/"


def state_path(output: str) -> str:
    return os.path.abspath(output) + SUFFIX


def stdin_copy_path(output: str) -> str:
    return os.path.abspath(output) + INPUT_SUFFIX


@dataclass(frozen=True)
class JobIdentity:
    """What makes a run the submission a state file describes: how its rows are asked. The input is
    compared by its content hash (BatchState.input_sha256), not by `input`, its path at submission:
    the same bytes at another path adopt the same jobs."""

    input: str  # absolute path of the input file at submission, or "<stdin>" plus the content hash
    template: str
    model: str
    system: str | None
    generation: str  # canonical JSON of temperature, max output tokens and schema
    id_column: str | None
    shard: str | None = None  # "K/N" when only one shard of the rows is this job's

    def differences(self, other: JobIdentity) -> list[str]:
        """The fields that differ, `input` (a path) left out: the content hash decides that."""
        mine, theirs = asdict(self), asdict(other)
        return [name for name in mine if name != "input" and mine[name] != theirs[name]]


@dataclass(frozen=True)
class JobRef:
    """One submitted part: its uploaded file, the rows it holds, and its job once created."""

    input_file: str  # "files/…": the uploaded JSONL part
    rows: int
    first_index: int  # 1-based data-row numbers of the part's first and last row: rows are
    last_index: int  # split in input order, so a row's index tells which job answers it
    bytes: int
    display_name: str
    name: str | None = None  # "batches/…"; None until the job is created
    model: str | None = None  # the job's model (-m fan-out makes jobs per model); None: the state's model


@dataclass(frozen=True)
class BatchState:
    """Everything `batch wait|fetch` needs to rebuild the records of a submission without its command."""

    output: str  # absolute path of OUT
    output_format: str
    identity: JobIdentity  # how the rows were asked, to refuse a run that would ask them otherwise
    input_path: str | None  # absolute path of the input file; None when it was stdin or a pipe
    stdin_copy: str | None  # the kept copy of stdin or of a pipe beside OUT (deleted after the fetch)
    input_format: str
    id_column: str | None
    input_sha256: str  # fingerprint of the input bytes at submission
    rows: int  # rows in the input
    model: str
    template: str  # template source text: -t of the rebuilt run
    generation: dict[str, Any]  # system, temperature, max_output_tokens, json_schema
    online: dict[str, Any]  # limits and retry bounds for --fallback online
    fallback_online: bool = False
    keep_files: bool = False
    jobs: tuple[JobRef, ...] = ()
    submitted: str = ""  # when the submission started (UTC, RFC 3339)
    fetched: bool = False  # OUT holds every row of these jobs
    files_deleted: bool = False  # uploaded inputs and result files deleted after the fetch
    attach: tuple[str, ...] = ()  # --attach columns of the run
    cache_path: str | None = None  # --cache of the run (absolute): the fetch stores the answers in it
    models: tuple[str, ...] = ()  # several -m: every row on each (one job per model); () means `model`
    media_files: tuple[str, ...] = ()  # attachments uploaded for the jobs' lines: deleted after the fetch
    media_failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # row id -> error of rows
    # whose attachments could not be had (a failing URL): left out of the jobs, written as failed rows
    attach_root: str | None = None  # the folder local attachments were confined to (resolved)
    allow_private_urls: bool = False  # --allow-private-urls of the run
    max_download: int | None = None  # the largest URL attachment of the run (None: the default)
    # --context of the run: "files" (absolute), "text", "cache" (the --context-cache mode), and "caches"
    # (model -> {"name", "tokens", "since"}: the cachedContents its lines name, deleted after the fetch,
    # which then sets "caches_deleted")
    context: dict[str, Any] = field(default_factory=dict)
    keep_order: bool = False  # --keep-order of the run: the fetch puts OUT in input order
    delimiter: str | None = None  # --delimiter of the run (None: the format's own, or told from the header)
    version: int = field(default=VERSION)

    def model_of(self, job: JobRef) -> str:
        return job.model or self.model

    @property
    def job_names(self) -> list[str]:
        return [job.name for job in self.jobs if job.name]

    def with_job(self, index: int, job: JobRef) -> BatchState:
        jobs = list(self.jobs)
        jobs[index] = job
        return replace(self, jobs=tuple(jobs))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["jobs"] = [asdict(job) for job in self.jobs]
        return {"kind": KIND, **data}

    @classmethod
    def from_json(cls, data: Any) -> BatchState:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError("not a gembulk batch state file")
        version = data.get("version")
        if version != VERSION:
            raise ValueError(f"state file version {version!r}, this gembulk reads version {VERSION}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["identity"] = JobIdentity(**data["identity"])
        values["jobs"] = tuple(JobRef(**job) for job in data.get("jobs") or ())
        values["attach"] = tuple(data.get("attach") or ())
        values["media_files"] = tuple(data.get("media_files") or ())
        values["models"] = tuple(data.get("models") or ())
        state = cls(**values)
        for job in state.jobs:
            if job.name is not None and not job.name.startswith(JOB_PREFIX):
                raise ValueError(f"job name {job.name!r} does not start with {JOB_PREFIX}")
        return state


def load(path: str) -> BatchState:
    """Read a state file; every problem is a StateFileError (exit 2) that says what to do."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise StateFileError(
            f"{path}: no such batch state file",
            hint="it is written beside -o OUT by `gembulk run … --batch`; pass that file or a job name",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path}: cannot read the batch state file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise StateFileError(
            f"{path}: corrupt batch state file (line {exc.lineno}: {exc.msg})",
            hint="its job names can still be used: gembulk batch list; gembulk batch fetch batches/ID -o OUT",
        ) from None
    try:
        return BatchState.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise StateFileError(f"{path}: not a usable gembulk batch state file ({exc})") from None


def save(path: str, state: BatchState) -> None:
    """Write atomically: a reader, a concurrent run or a crash sees the old state or the new, never half."""
    # Its temp file is named as OUT's, so the next run on OUT removes it if this process is killed.
    owner = path.removesuffix(SUFFIX) if path.endswith(SUFFIX) else path
    write_json_atomic(path, state.to_json(), prefix=temp_prefix(owner), suffix=TEMP_SUFFIX)


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def resolve_target(target: str, output: str | None) -> tuple[str | None, str | None]:
    """`JOB|STATEFILE` (+ -o OUT) → (state file path, job name); one of them may be None.

    A job name (batches/…) is looked up in OUT's state file when -o names an output that has one;
    without a state file the job is used bare (records then carry only id = key and the answer).
    A path is a state file, or an output whose state file sits beside it.
    """
    if target.startswith(JOB_PREFIX):
        if output is None or output == "-":
            return None, target
        path = state_path(output)
        if not os.path.exists(path):
            return None, target
        state = load(path)
        if target not in state.job_names:
            raise StateFileError(
                f"{path} does not list {target} (its jobs: {', '.join(state.job_names) or 'none'})",
                hint="use another -o, or pass the state file of that job",
            )
        return path, target
    if os.path.isfile(target) and not target.endswith(SUFFIX) and os.path.isfile(state_path(target)):
        return state_path(target), None
    if not os.path.exists(target) and os.path.isfile(state_path(target)):
        return state_path(target), None
    return os.path.abspath(target), None
