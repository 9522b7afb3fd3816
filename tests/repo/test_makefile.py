"""The Makefile tells the truth: `make help` lists every target and knob, defaults come from the Dockerfile and
pyproject.toml, `clean` never touches outputs, RUNNER is explicit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed (the image has none)")


def knobs() -> list[str]:
    return re.findall(r"^([A-Z0-9_]+) +\?=", MAKEFILE.read_text(), re.M)


def make(*args: str) -> subprocess.CompletedProcess:
    """make ARGS with the defaults: no knob inherited from this environment (CI exports e.g. TORCH_INDEX_URL)."""
    env = {k: v for k, v in os.environ.items() if k not in knobs()}
    command = ["make", "-s", "--no-print-directory", "-C", str(ROOT), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env)


def value(name: str) -> str:
    """What Make expands the variable to, as a target would see it."""
    result = make(f"--eval=print-var: ; @echo '$({name})'", "print-var")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def targets() -> set[str]:
    return set(re.findall(r"^([a-z0-9][\w-]*):(?!=)", MAKEFILE.read_text(), re.M))


def test_help_lists_every_target_and_knob():
    text = re.sub(r"\x1b\[[0-9;]*m", "", make("help").stdout)
    listed = set(re.findall(r"^  ([a-z0-9][\w-]*) ", text, re.M))
    assert targets() - {"print-var"} <= listed
    assert knobs() and all(re.search(rf"^  {k} +\S", text, re.M) for k in knobs())
    assert "$(" not in text, "help must show values, not Make syntax"


def test_every_knob_is_documented():
    undocumented = [
        line for line in MAKEFILE.read_text().splitlines() if re.match(r"^[A-Z0-9_]+ +\?=", line) and "#: " not in line
    ]
    assert undocumented == []


def test_defaults_are_read_from_the_dockerfile_and_pyproject():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("MAX_JOBS", "VLLM_ARM_ISA", "TORCH_INDEX_URL"):
        (default,) = set(re.findall(rf"^ARG {name}=(.*)$", dockerfile, re.M))
        assert value(name) == default
    (version,) = re.findall(r'^version = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert value("IMAGE") == f"vllm-arm-int4:{version}"


def test_clean_never_removes_outputs():
    dry_run = make("-n", "clean", "OUT=my-quantized-models").stdout
    assert "my-quantized-models" not in dry_run and ".pytest_cache" in dry_run


def test_runner_is_explicit():
    assert value("RUNNER") == "host"
    result = make("-n", "quantize", "MODEL=m", "RUNNER=podman")
    assert result.returncode == 2
    assert "RUNNER=podman is not a runner (fix: RUNNER=host or RUNNER=docker)" in result.stderr
    assert "docker run" in make("-n", "quantize", "MODEL=m", "RUNNER=docker").stdout


def test_recipe_replaces_method_scheme_and_groupsize():
    host = make("-n", "quantize", "MODEL=m", "RECIPE=recipes/awq-mse-g32.yaml").stdout
    assert '--recipe "recipes/awq-mse-g32.yaml"' in host and "--method" not in host and "--scheme" not in host
    docker = make("-n", "quantize", "MODEL=m", "RECIPE=recipes/awq-mse-g32.yaml", "RUNNER=docker").stdout
    mount = f"-v {ROOT / 'recipes' / 'awq-mse-g32.yaml'}:/recipes/awq-mse-g32.yaml:ro"
    assert mount in docker and '--recipe "/recipes/awq-mse-g32.yaml"' in docker
    assert "--method mse --scheme channelwise --groupsize 32" in make("-n", "quantize", "MODEL=m").stdout
