"""docker/vllm-sources.sh, the vLLM source build's inputs: every archive is checked against its pinned sha256,
a wrong one fails naming the file and the pin, and OFFLINE=1 fails naming a missing input instead of leaving the
download to upstream's cmake. Runs the real script on small stand-in archives (the pins come from the
environment, as the Dockerfile passes its ARGs)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "vllm-sources.sh"
pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="docker/ is repository-only: the image has no build scripts"
)


# The two lines of vLLM's cmake/cpu_extension.cmake that read the build host's Arm features.
CMAKE_ISA = 'find_isa(${CPUINFO} "bf16" ARM_BF16_FOUND)\nfind_isa(${CPUINFO} "i8mm" ARM_I8MM_FOUND)\n'
PATCH = "--- a/README\n+++ b/README\n@@ -1 +1 @@\n-stand-in\n+patched\n"


def make_archive(path: Path, top: str, compress: bool, files: dict | None = None) -> str:
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for name, text in {"README": "stand-in\n", **(files or {})}.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def deps(tmp_path):
    """A deps/ folder for amd64 with a stand-in sdist, oneDNN archive and one wheel, and the matching pins."""
    folder = tmp_path / "deps"
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "ninja-1.0-py3-none-any.whl").write_bytes(b"stand-in")
    (tmp_path / "vllm.patch").write_text(PATCH)
    sdist = {"cmake/cpu_extension.cmake": CMAKE_ISA}
    env = {
        "ARCH": "amd64",
        "VLLM_VERSION": "9.9.9",
        "VLLM_SDIST_URL": "http://127.0.0.1:9/unreachable.tar.gz",
        "VLLM_SDIST_SHA256": make_archive(folder / "vllm-9.9.9.tar.gz", "vllm-9.9.9", compress=True, files=sdist),
        "VLLM_PATCH": str(tmp_path / "vllm.patch"),
        "VLLM_ARM_ISA": "neoverse-n1",
        "ONEDNN_REF_AMD64": "v0.1",
        "ONEDNN_SHA256_AMD64": make_archive(folder / "oneDNN-v0.1.tar", "oneDNN", compress=False),
        "ACL_VERSION": "v0.2",
        "ACL_SHA256": "",
        "DOCKERFILE": "/nonexistent",
    }
    return folder, env


def unpack(folder: Path, work: Path, env: dict, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), "unpack", str(folder), str(work)],
        env={"PATH": "/usr/bin:/bin", **env, **extra},
        capture_output=True,
        text=True,
    )


def test_inputs_that_match_their_pins_are_unpacked_and_nothing_is_downloaded(deps, tmp_path):
    folder, env = deps
    result = unpack(folder, tmp_path / "work", env, OFFLINE="1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "work" / "vllm-9.9.9" / "README").read_text() == "patched\n"
    assert (tmp_path / "work" / "oneDNN" / "README").is_file()
    assert f"FETCHCONTENT_SOURCE_DIR_ONEDNN={tmp_path / 'work' / 'oneDNN'}" in result.stdout
    assert f"PIP_NO_INDEX=1 PIP_FIND_LINKS={folder / 'wheels'}" in result.stdout
    assert "-DFETCHCONTENT_FULLY_DISCONNECTED=ON" in result.stdout


@pytest.mark.parametrize("name", ["vllm-9.9.9.tar.gz", "oneDNN-v0.1.tar"])
def test_a_planted_wrong_archive_fails_naming_the_file_and_its_pin(deps, tmp_path, name):
    folder, env = deps
    (folder / name).write_bytes(b"tampered")
    pin = "VLLM_SDIST_SHA256" if name.startswith("vllm") else "ONEDNN_SHA256_AMD64"
    result = unpack(folder, tmp_path / "work", env)
    assert result.returncode == 1
    got = hashlib.sha256(b"tampered").hexdigest()
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(f"{name} has sha256 {got}, expected {env[pin]} ({pin}) (fix: delete it and run make deps)")
    )


@pytest.mark.parametrize(
    ("missing", "arch"),
    [("vllm-9.9.9.tar.gz", "amd64"), ("oneDNN-v0.1.tar", "amd64"), ("ComputeLibrary-v0.2.tar", "arm64")],
)
def test_offline_build_with_a_missing_input_fails_naming_it(deps, tmp_path, missing, arch):
    folder, env = deps
    if arch == "arm64":  # the arm64 build takes the same stand-in oneDNN under its own pin
        (folder / "oneDNN-v0.1.tar").rename(folder / "oneDNN-v0.3.tar")
        env |= {"ARCH": "arm64", "ONEDNN_REF_ARM64": "v0.3", "ONEDNN_SHA256_ARM64": env["ONEDNN_SHA256_AMD64"]}
    (folder / missing).unlink(missing_ok=True)
    result = unpack(folder, tmp_path / "work", env, OFFLINE="1")
    assert result.returncode == 1
    assert f"error: deps/{missing} is missing and OFFLINE=1 (fix: make deps" in result.stderr


def test_an_unpinned_archive_is_refused(deps, tmp_path):
    folder, env = deps
    make_archive(folder / "ComputeLibrary-v0.2.tar", "ComputeLibrary", compress=False)
    (folder / "oneDNN-v0.1.tar").rename(folder / "oneDNN-v0.3.tar")
    env |= {"ARCH": "arm64", "ONEDNN_REF_ARM64": "v0.3", "ONEDNN_SHA256_ARM64": env["ONEDNN_SHA256_AMD64"]}
    result = unpack(folder, tmp_path / "work", env)
    assert result.returncode == 1
    assert "ComputeLibrary-v0.2.tar has no pinned sha256 (fix: set ARG ACL_SHA256" in result.stderr


def test_the_pins_default_to_the_dockerfiles_args(tmp_path):
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "vllm-0.32.0.tar.gz").write_bytes(b"tampered")
    result = unpack(tmp_path / "deps", tmp_path / "work", {"ARCH": "amd64"}, OFFLINE="1")
    assert result.returncode == 1
    assert (
        "expected d2c957d5eee3d0985012151315ddc62cbe0cd368fc96a5fc3510438d9dddf2ad (VLLM_SDIST_SHA256)" in result.stderr
    )


@pytest.mark.parametrize(
    ("isa", "cmake", "exports"),
    [
        ("neoverse-n1", "set(ARM_BF16_FOUND OFF)\nset(ARM_I8MM_FOUND OFF)\n", ""),
        ("bf16-i8mm", CMAKE_ISA, "export VLLM_CPU_ARM_BF16=1 VLLM_CPU_ARM_I8MM=1"),
    ],
)
def test_the_arm_isa_is_pinned_not_read_from_the_build_host(deps, tmp_path, isa, cmake, exports):
    folder, env = deps
    (folder / "oneDNN-v0.1.tar").rename(folder / "oneDNN-v0.3.tar")
    env |= {"ARCH": "arm64", "ONEDNN_REF_ARM64": "v0.3", "ONEDNN_SHA256_ARM64": env["ONEDNN_SHA256_AMD64"]}
    result = unpack(folder, tmp_path / "work", env, VLLM_ARM_ISA=isa)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "work" / "vllm-9.9.9" / "cmake" / "cpu_extension.cmake").read_text() == cmake
    assert exports in result.stdout


def test_an_arm_isa_on_amd64_is_refused(deps, tmp_path):
    folder, env = deps
    result = unpack(folder, tmp_path / "work", env, VLLM_ARM_ISA="bf16-i8mm")
    assert result.returncode == 1
    assert "VLLM_ARM_ISA=bf16-i8mm is an Arm ISA; amd64 builds take none (fix: drop it)" in result.stderr


def test_record_names_the_compiler_and_the_march_of_vllms_own_sources(deps, tmp_path):
    """The wheel's provenance (vllm-build.json) says which -march vLLM's csrc/ got: the proof that an N1 build
    carries neither +bf16 nor +i8mm. oneDNN's own files (not csrc/) do not count."""
    import json

    folder, env = deps
    wheel = tmp_path / "vllm-9.9.9-cp38-abi3-linux_aarch64.whl"
    wheel.write_bytes(b"stand-in")
    commands = tmp_path / "compile_commands.json"
    entry = {
        "directory": "/b",
        "file": "/s/csrc/cpu/activation.cpp",
        "command": "g++ -march=armv8.2-a+dotprod+fp16 -c x",
    }
    onednn = {"directory": "/b", "file": "/s/oneDNN/src/x.cpp", "arguments": ["g++", "-march=armv8.6-a+bf16", "-c"]}
    commands.write_text(json.dumps([entry, onednn]))
    result = subprocess.run(
        ["bash", str(SCRIPT), "record", str(wheel)],
        env={
            "PATH": "/usr/bin:/bin",
            **env,
            "ARCH": "arm64",
            "VLLM_CPU_ACL": "0",
            "CXX": "g++",
            "COMPILE_COMMANDS": str(commands),
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["march"] == ["-march=armv8.2-a+dotprod+fp16"]
    assert record["acl"] == "off" and record["arm_isa"] == "neoverse-n1"
    assert record["compiler"].startswith("g++")
    assert record["wheel"] == wheel.name


CROSS = ROOT / "docker" / "vllm-cross.sh"


@pytest.mark.parametrize(
    "args,env,error",
    [
        (
            ["build", "deps", "work", "dist"],
            {"ACL": "on"},
            "vllm-cross: error: ACL=on cannot be cross-compiled (ACL's build ignores the toolchain) "
            "(fix: ACL=off, or build natively on arm64)",
        ),
        (["build", "deps"], {}, f"vllm-cross: error: usage: {CROSS} build DEPS WORK DIST"),
        (["compile"], {}, f"vllm-cross: error: usage: {CROSS} packages | build DEPS WORK DIST | host DEPS WORK DIST"),
    ],
)
def test_cross_build_refuses_what_it_cannot_do(tmp_path, args, env, error):
    result = subprocess.run(
        ["bash", str(CROSS), *args], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == error
    assert not (tmp_path / "work").exists()
