"""Create or reuse a virtual environment for a peer library under ``bench/.venvs/<peer>``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["VENVS", "peer_python"]

VENVS = Path(__file__).resolve().parent / ".venvs"


def _python_in(root: Path) -> Path:
    if sys.platform == "win32":
        return root / "Scripts" / "python.exe"
    return root / "bin" / "python"


def _works(python: Path, probe: str) -> bool:
    if not python.exists():
        return False
    done = subprocess.run([str(python), "-c", probe], capture_output=True, check=False)
    return done.returncode == 0


def peer_python(peer: str, packages: Sequence[str], *, probe: str) -> Path:
    """The interpreter of ``peer``'s own venv, created and filled with pip on first use.

    Args:
        peer: Folder name under ``bench/.venvs``.
        packages: Requirements handed to ``pip install``.
        probe: Python code that exits 0 when the venv is ready (e.g. ``"import huey"``).

    Returns:
        The path of the venv's ``python``.
    """
    root = VENVS / peer
    python = _python_in(root)
    if _works(python, probe):
        return python
    print(f"creating {root} and installing {' '.join(packages)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *packages], check=True)
    if not _works(python, probe):
        raise RuntimeError(f"the venv {root} does not pass its probe {probe!r}")
    return python
