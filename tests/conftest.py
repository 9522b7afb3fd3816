"""Session fixtures: tiny models trained offline once per test run, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiny_models

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return tiny_models.build("llama", tmp_path_factory.mktemp("models") / "tiny-llama", steps=300)


@pytest.fixture(scope="session")
def tiny_deepseek(tmp_path_factory) -> Path:
    return tiny_models.build("deepseek_v2", tmp_path_factory.mktemp("models") / "tiny-deepseek-v2", steps=100)


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m quantize ARGS` in a fresh process, as a user would run it."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "quantize", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The last line of stderr: where the CLI prints its one-line error."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
