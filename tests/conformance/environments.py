"""Other SDKs for the conformance suite, installed on demand into .conformance/ (ignored by git).

The project's own venv is never changed: another google-genai version gets its own venv, and the
JavaScript SDK its own node_modules, each created once and reused by later runs. Anything that cannot
be created (no network to the package index, no node/npm) is a skip with the reason, never a failure.
"""

from __future__ import annotations

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
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{' '.join(args[:4])} failed: {' | '.join(tail)}")
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


def sdk_python(version: str) -> Path:
    """The python of a venv holding google-genai==version, made on first use."""
    home = CACHE / f"python-google-genai-{version}"
    python = home / "bin" / "python"
    if (home / ".ready").exists() and python.exists():
        return python
    shutil.rmtree(home, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(home)])
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"google-genai=={version}"]
    )
    (home / ".ready").write_text(version + "\n", encoding="utf-8")
    return python


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
