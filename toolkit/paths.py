"""Where the project's own folders are: one root for every module that needs one (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The project root: the folder holding run.py, config/, extensions/."""

CONFIG_DIR = ROOT / "config"
EXAMPLES_DIR = CONFIG_DIR / "examples"
TINY_ROOT = Path(os.environ.get("TINY_MODELS_DIR", ROOT / ".tiny_models"))
"""Where `tiny:<id>` models are built once and reused (tests and the offline demo)."""
