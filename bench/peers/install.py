"""Airflow's own virtualenv under ``bench/.peers/``: made from ``requirements-airflow.txt`` by pip
from the package registry on first use, and reused while it still matches that file.

A marker in the virtualenv holds the hash of the requirements it was installed from; a changed
file, a missing marker or a different Airflow version reinstalls (pip moves the pins in place).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

__all__ = [
    "REQUIREMENTS",
    "InstallError",
    "ensure_airflow",
    "installed_airflow_version",
    "pinned_airflow_version",
]

REQUIREMENTS = Path(__file__).resolve().parent / "requirements-airflow.txt"
_MARKER = ".weir-peers-requirements.sha256"
_PIN = re.compile(r"^apache-airflow(?:\[[^\]]*\])?==(?P<version>\S+)", re.MULTILINE)


class InstallError(RuntimeError):
    """Airflow could not be installed; the message names the log to read."""


def pinned_airflow_version(requirements: str) -> str:
    """The Airflow version a requirements text pins (``apache-airflow[extras]==X``)."""
    match = _PIN.search(requirements)
    if match is None:
        raise InstallError("the requirements pin no apache-airflow==<version>")
    return match["version"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def installed_airflow_version(venv: Path) -> str | None:
    """The apache-airflow version in ``venv`` (None if there is none)."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('apache-airflow'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _is_current(venv: Path, requirements: Path, version: str) -> bool:
    marker = venv / _MARKER
    if not marker.exists() or marker.read_text().strip() != _digest(requirements):
        return False
    return installed_airflow_version(venv) == version


def _run_streamed(command: list[str], log: Path, console: Console, what: str) -> None:
    """Run ``command``, its output into ``log`` and its latest line into a spinner."""
    with log.open("a") as out, console.status(what) as status:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            if line.strip():
                status.update(f"{what}: [dim]{line.strip()[:90]}[/]")
        if process.wait() != 0:
            raise InstallError(f"{' '.join(command[:4])} … failed; see {log}")


def ensure_airflow(venv: Path, console: Console, requirements: Path = REQUIREMENTS) -> str:
    """Make ``venv`` hold the pinned Airflow (installing only if needed); returns its version."""
    version = pinned_airflow_version(requirements.read_text())
    if _is_current(venv, requirements, version):
        console.print(f"Airflow {version}: reusing {venv}")
        return version
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "install.log"
    console.print(
        f"Airflow {version}: installing into {venv} from the package registry (log {log})"
    )
    if not (venv / "bin" / "python").exists():
        _run_streamed([sys.executable, "-m", "venv", str(venv)], log, console, "virtualenv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    _run_streamed(
        [*pip, "--progress-bar", "off", "-r", str(requirements)],
        log,
        console,
        f"installing Airflow {version} (a few minutes the first time)",
    )
    found = installed_airflow_version(venv)
    if found != version:
        raise InstallError(f"installed apache-airflow is {found}, not {version}; see {log}")
    (venv / _MARKER).write_text(_digest(requirements) + "\n")
    return version
