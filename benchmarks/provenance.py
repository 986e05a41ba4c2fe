"""Where a committed result comes from: the commit, the command, the CPU and the packages.

Stage-1 training is deterministic on one machine, but torch picks its kernels by the CPU's
instruction set (``torch.backends.cpu.get_cpu_capability()``), and sin, exp and matmul round
differently under AVX2 and AVX-512 (measured: the bytes of ``torch.sin`` over 10^6 values
differ), so training diverges across machines. A result therefore names the CPU and that
capability beside the commit, and ``environment.txt`` (``pip freeze``) lists every package.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
KEY_PACKAGES = ("torch", "numba", "numpy", "constriction")
ENVIRONMENT_NAME = "environment.txt"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance(command: list[str]) -> dict[str, str]:
    """The commit the run starts from (``+dirty`` if csgaussian/ or benchmarks/, results aside, has
    uncommitted changes then), the command, the CPU and the key packages' versions."""
    dirty = _git("status", "--porcelain", "csgaussian", "benchmarks", ":!benchmarks/results")
    versions = {name: metadata.version(name) for name in KEY_PACKAGES}
    return {
        "commit": _git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else ""),
        "command": " ".join(command),
        "cpu": f"{cpu_model()} (torch kernels: {torch.backends.cpu.get_cpu_capability()})",
        "python": platform.python_version(),
        "packages": ", ".join(f"{name} {version}" for name, version in versions.items()),
    }


def write_environment(out: Path) -> Path:
    """``pip freeze`` of the running interpreter into ``out/environment.txt``."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
    ).stdout
    path = out / ENVIRONMENT_NAME
    path.write_text(frozen)
    return path


def spread(values: list[float]) -> dict[str, float]:
    """Min, median and max of repeated measurements (3 decimals), as results records give them."""
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def write_record(out: Path, name: str, command: list[str], fields: dict[str, object]) -> Path:
    """``out/NAME.json``: the run's provenance (``command``) then ``fields``, and
    ``out/environment.txt`` beside it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    record = {"provenance": provenance(command), **fields}
    path.write_text(json.dumps(record, indent=1) + "\n")
    write_environment(out)
    return path


def provenance_lines(origin: dict[str, str]) -> list[str]:
    """The Markdown lines a results file opens with."""
    return [
        f"Made at commit `{origin['commit']}` by `{origin['command']}`",
        f"on {origin['cpu']}, Python {origin['python']}, {origin['packages']} "
        f"(every package: `{ENVIRONMENT_NAME}`).",
    ]
