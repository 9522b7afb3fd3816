"""GitHub Actions workflows, checked without GitHub: every `run:` step calls Make targets that exist, every
action is pinned by commit SHA, permissions are explicit, and every job has a timeout."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SHA_PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
pytestmark = pytest.mark.skipif(
    not (ROOT / ".github").is_dir(), reason=".github/ is repository-only: images do not contain it (.dockerignore)"
)


def make_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9][\w-]*):(?!=)", makefile.read_text(), re.M))


def called_targets(command: str) -> list[str]:
    """Targets named by `make ...` invocations in a shell command (VAR=value and -flags skipped)."""
    targets = []
    for line in command.replace(">-", "").split("\n&&"):
        words = shlex.split(line.replace("\n", " "), posix=True)
        for i, word in enumerate(words):
            if word == "make":
                for arg in words[i + 1 :]:
                    if arg in ("&&", "||", ";", "|"):
                        break
                    if "=" not in arg and not arg.startswith("-"):
                        targets.append(arg)
    return targets


def problems(workflow: dict, targets: set[str]) -> list[str]:
    found = []
    jobs = workflow.get("jobs", {})
    top_permissions = "permissions" in workflow
    for name, job in jobs.items():
        if not top_permissions and "permissions" not in job:
            found.append(f"job {name}: no permissions (set them at the top or per job)")
        if "timeout-minutes" not in job:
            found.append(f"job {name}: no timeout-minutes")
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses and not uses.startswith("./") and not SHA_PINNED.match(uses):
                found.append(f"job {name}: action {uses} is not pinned by commit SHA")
            for target in called_targets(step.get("run", "")):
                if target not in targets:
                    found.append(f"job {name}: run step calls make {target}, which the Makefile does not define")
    return found


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "image.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_structure(path):
    assert problems(load(path), make_targets()) == []


def test_checks_catch_planted_violations():
    workflow = load(ROOT / ".github" / "workflows" / "ci.yml")
    del workflow["permissions"]
    job = workflow["jobs"]["lint"]
    del job["timeout-minutes"]
    job["steps"][0]["uses"] = "actions/checkout@v4"
    job["steps"].append({"run": "make lint no-such-target V=1"})
    assert problems(workflow, make_targets()) == [
        "job lint: no permissions (set them at the top or per job)",
        "job lint: no timeout-minutes",
        "job lint: action actions/checkout@v4 is not pinned by commit SHA",
        "job lint: run step calls make no-such-target, which the Makefile does not define",
        "job test: no permissions (set them at the top or per job)",
        "job test-arm64-n1: no permissions (set them at the top or per job)",
    ]


def test_every_workflow_make_call_is_parsed():
    image = load(ROOT / ".github" / "workflows" / "image.yml")
    runs = [s["run"] for j in image["jobs"].values() for s in j["steps"] if "run" in s]
    assert [called_targets(r) for r in runs][:2] == [["image"], ["image-test"]]
