"""Skip a test for a missing system binary locally, but FAIL it in CI (env var CI set):
a CI run must never pass by skipping what it was meant to test."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["missing", "require_binary"]


def require_binary(name: str) -> str:
    """Return the binary's full path; skip (locally) or fail (CI) when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    missing(f"required binary {name!r} is not installed (see Makefile: system-packages)")


def missing(message: str) -> NoReturn:
    """Something a test needs is not on this machine: skip locally, fail when CI is set."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
