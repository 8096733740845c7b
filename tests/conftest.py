"""Shared fixtures: tiny models built once per machine (cached in .tiny_models/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.paths import ROOT, TINY_ROOT  # noqa: F401 - ROOT is imported by tests from here


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains whole jobs on the tiny models (minutes); -m 'not slow' skips")


@pytest.fixture(scope="session")
def tiny():
    """tiny(arch, layout) -> folder holding that tiny model in that layout."""
    from toolkit.tiny import ensure_tiny

    def get(arch: str, layout: str = "diffusers") -> Path:
        return ensure_tiny(arch, TINY_ROOT, layout)

    return get
