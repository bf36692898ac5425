"""The malloc arena cap of the long-running commands (linli/ops/malloc.py)."""

from __future__ import annotations

import ctypes.util
import sys

import pytest

from linli.ops.malloc import limit_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
                    reason="mallopt is glibc's")
def test_the_cap_is_applied_on_glibc_unless_the_environment_already_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_arenas() is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False  # glibc read the variable at start: it wins
