"""Describe the machine a benchmark ran on: figures mean nothing without it."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from sandbox import SLAPD_PROGRAM


def _first_match(path: Path, pattern: str) -> str | None:
    """Return group 1 of the first line of ``path`` matching ``pattern`` (None if unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1).strip() if match else None


def _command_line(argv: list[str], pattern: str) -> str | None:
    """Return group 1 of ``pattern`` in the output of ``argv``, None when it fails."""
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(pattern, completed.stdout + completed.stderr)
    return match.group(1).strip() if match else None


def describe() -> dict[str, str | int | None]:
    """Return the CPU model, core count, RAM, kernel, Python, slapd and rsnapshot versions.

    Takes nothing; every figure that cannot be read is None rather than an error.
    """
    memory_kib = _first_match(Path("/proc/meminfo"), r"^MemTotal:\s+(\d+) kB")
    import ldap3

    return {
        "cpu": _first_match(Path("/proc/cpuinfo"), r"^model name\s*:\s*(.+)$")
        or platform.processor()
        or None,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory_kib) / 1024**2, 1) if memory_kib else None,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "ldap3": ldap3.__version__,
        "slapd": _command_line([str(SLAPD_PROGRAM), "-VV"], r"slapd\s+([^\s]+)"),
        "rsnapshot": _command_line(["rsnapshot", "--version"], r"rsnapshot\s+([^\s]+)"),
    }
