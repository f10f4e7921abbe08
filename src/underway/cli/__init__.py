"""The ``underway`` command line: run nodes and processes, migrate, inspect jobs, the demo."""

from __future__ import annotations

from underway.cli._main import main

__all__ = ["main"]
