"""Other SDKs for the conformance suite, installed on demand into .conformance/ (ignored by git).

The project's own venv is never changed: another google-genai version gets its own venv, and the
JavaScript SDK its own node_modules, each created once and reused by later runs. Anything that cannot
be created (no network to the package index, no node/npm) is a skip with the reason, never a failure.
A last venv holds this checkout itself (editable, with its test extras) beside the lowest google-genai
pyproject.toml allows, so gembulk's own SDK-facing tests run against that floor too (`make conformance`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".conformance"
_INSTALL_TIMEOUT = 300


class Unavailable(Exception):
    """The environment cannot be made here; the message is the skip reason."""


def _run(args: list[str], timeout: float = _INSTALL_TIMEOUT) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{' '.join(args[:4])}: {exc}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).strip().splitlines()]
        errors = [line for line in lines if line.startswith("ERROR:")]  # pip's reason, not its epilogue
        raise Unavailable(f"{' '.join(args[:4])} failed: {' | '.join((errors or lines)[-3:])}")
    return done.stdout


def installed_sdk() -> str:
    return metadata.version("google-genai")


def pinned_range() -> SpecifierSet:
    """The google-genai range pyproject.toml pins, e.g. ">=3.3,<4"."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'"google-genai([^"]*)"', text)
    return SpecifierSet(found.group(1) if found else "")


def index_versions() -> list[Version]:
    """Every google-genai version the package index offers, newest first (`pip index versions`)."""
    out = _run([sys.executable, "-m", "pip", "index", "versions", "google-genai"], timeout=60)
    found = re.search(r"Available versions:\s*(.+)", out)
    if found is None:
        raise Unavailable("pip index versions google-genai listed no versions")
    return sorted((Version(v.strip()) for v in found.group(1).split(",")), reverse=True)


def sdk_version(which: str) -> str:
    """ "pinned": the oldest release the pin allows (what the wire notes describe); "newest": the newest."""
    versions = index_versions()
    if which == "newest":
        return str(versions[0])
    allowed = [v for v in versions if v in pinned_range() and not v.is_prerelease]
    if not allowed:
        raise Unavailable(f"the index has no google-genai release in {pinned_range()}")
    return str(allowed[-1])


def sdk_floor() -> str:
    """The lowest google-genai pyproject.toml allows: the version of its lower bound (">=3.3" -> "3.3")."""
    bounds = [Version(spec.version) for spec in pinned_range() if spec.operator in (">=", "~=", "==")]
    if not bounds:
        raise ValueError(f"pyproject.toml gives google-genai no lower bound: {pinned_range() or 'none'}")
    return str(max(bounds))


def _made(home: Path, stamp: str) -> bool:
    ready = home / ".ready"
    if not (ready.exists() and (home / "bin" / "python").exists()):
        return False
    return ready.read_text(encoding="utf-8").strip() == stamp


def _venv(home: Path, stamp: str, requirements: list[str]) -> Path:
    """The python of the venv `home`, made with `requirements` unless it was made with the same `stamp`."""
    python = home / "bin" / "python"
    if _made(home, stamp):
        return python
    shutil.rmtree(home, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(home)])
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements])
    (home / ".ready").write_text(stamp + "\n", encoding="utf-8")
    return python


def sdk_python(version: str) -> Path:
    """The python of a venv holding google-genai==version, made on first use."""
    return _venv(CACHE / f"python-google-genai-{version}", version, [f"google-genai=={version}"])


def gembulk_python(sdk: str) -> Path:
    """The python of a venv holding this checkout (editable, with its test extras) and google-genai==sdk,
    made on first use and made again when pyproject.toml (its dependencies) changes."""
    pyproject = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return _venv(
        CACHE / f"gembulk-google-genai-{sdk}",
        f"{sdk} {pyproject}",
        ["-e", f"{ROOT}[test]", f"google-genai=={sdk}"],
    )


def node_sdk(script: Path) -> tuple[str, Path]:
    """(version, script copy) for the newest @google/genai, installed beside a copy of `script`."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise Unavailable("node and npm are needed for the @google/genai conformance script")
    version = json.loads(_run([npm, "view", "@google/genai", "version", "--json"], timeout=60))
    home = CACHE / f"node-google-genai-{version}"
    if not (home / ".ready").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        (home / "package.json").write_text('{"private": true, "type": "module"}\n', encoding="utf-8")
        _run(
            [
                npm,
                "install",
                "--prefix",
                str(home),
                "--no-audit",
                "--no-fund",
                "--silent",
                f"@google/genai@{version}",
            ]
        )
        (home / ".ready").write_text(version + "\n", encoding="utf-8")
    copy = home / script.name
    shutil.copyfile(script, copy)
    return version, copy
