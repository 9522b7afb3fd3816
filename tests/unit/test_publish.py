"""`publish`: what reaches the Hub, byte for byte, and what is refused before anything is sent.

The Hub is the loopback stub of tests/hub.py: it records every request and every file of each commit, and the
tests compare each file that arrived with the local one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest

from quantize.hashing import sha256_file
from quantize.manifest import MANIFEST
from quantize.publish import COMMIT_MESSAGE
from tests.helpers import error_line, run_cli, run_main

TOKEN = "hf_secret_test_token"
REPO = "org/tiny-w4a8"
TOKEN_FIX = "set HF_TOKEN or run `hf auth login`"
MODEL_CARD = "---\nlicense: apache-2.0\ntags:\n- w4a8\n---\n# tiny-w4a8\n"


@pytest.fixture
def hub(hub):
    """The Hub stub (tests/hub.py) and the environment that points `python -m quantize publish` at it, with a
    token. LFS files go by Git LFS (HF_HUB_DISABLE_XET=1; with 0, they go to Xet storage, which the stub lacks)."""
    env, server = hub
    return {**env, "HF_TOKEN": TOKEN}, server


@pytest.fixture(scope="module")
def ckpt(quantized, tmp_path_factory) -> Path:
    """A copy of the shared quantized tiny Llama, with a model card and hidden leftovers (a manifest being
    rewritten, a hidden folder) that must not be uploaded."""
    shared = quantized("tiny_llama", method="minmax", scheme="groupwise")
    out = Path(shutil.copytree(shared, tmp_path_factory.mktemp("publish") / "ckpt"))
    if not (out / "README.md").exists():
        (out / "README.md").write_text(MODEL_CARD)
    (out / f".{MANIFEST}.tmp-123").write_text("{}")
    (out / ".partial").mkdir()
    (out / ".partial" / "model.safetensors").write_bytes(b"leftover")
    return out


def published(ckpt: Path) -> set[str]:
    """What quantize wrote (its manifest says) and the model card."""
    return {*json.loads((ckpt / MANIFEST).read_text())["files"], MANIFEST, "README.md"}


def error_of(result, code: int = 2) -> str:
    """The error line of a failed run: the last line of stderr, and the only one that starts with "error:"."""
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [error_line(result)], result.stderr
    return errors[0]


def test_dry_run_lists_files_without_token_or_network(ckpt, hub):
    env, server = hub
    result = run_cli("publish", ckpt, "--repo-id", REPO, "--dry-run", env={**env, "HF_TOKEN": ""})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["repo_id"] == REPO and report["private"] is False
    assert [f["path"] for f in report["files"]] == sorted(published(ckpt))
    assert all(f["bytes"] == (ckpt / f["path"]).stat().st_size for f in report["files"])
    assert report["total_bytes"] == sum(f["bytes"] for f in report["files"]) > 500_000
    assert server.requests == []


@pytest.mark.parametrize("client", ["git-lfs", "hf-xet"])
def test_upload_arrives_byte_identical(ckpt, hub, client):
    """git-lfs: model.safetensors goes by the LFS batch API and a PUT; hf-xet: huggingface_hub's default client,
    with every file inline (the stub has no Xet storage)."""
    env, server = hub
    if client == "hf-xet":
        env["HF_HUB_DISABLE_XET"] = "0"
        server.lfs_suffixes = ()
    result = run_cli("publish", ckpt, "--repo-id", REPO, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["url"] == f"{server.endpoint}/{REPO}"
    assert report["commit"].startswith(f"{server.endpoint}/{REPO}/commit/")
    assert server.created == [{"name": "tiny-w4a8", "organization": "org", "visibility": "public", "type": "model"}]
    [commit] = server.commits
    assert commit["summary"] == COMMIT_MESSAGE
    received = {path: hashlib.sha256(data).hexdigest() for path, data in commit["files"].items()}
    assert received == {path: sha256_file(ckpt / path) for path in published(ckpt)}
    assert commit["lfs"] == (["model.safetensors"] if client == "git-lfs" else [])
    assert ("POST", f"/api/models/{REPO}/commit/main", f"Bearer {TOKEN}") in server.requests
    # The storage an LFS object goes to (S3, for huggingface.co) never sees the token.
    assert [auth for method, _, auth in server.requests if method == "PUT"] == ([""] if client == "git-lfs" else [])
    assert TOKEN not in result.stdout + result.stderr


def test_private_reaches_create_repo(ckpt, hub):
    env, server = hub
    result = run_cli("publish", ckpt, "--repo-id", REPO, "--private", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["private"] is True
    assert [request["visibility"] for request in server.created] == ["private"]


def test_invalid_checkpoint_is_not_published(ckpt, hub, tmp_path):
    env, server = hub
    broken = Path(shutil.copytree(ckpt, tmp_path / "broken"))
    (broken / "tokenizer_config.json").unlink()
    assert error_of(run_cli("publish", broken, "--repo-id", REPO, env=env), code=1) == (
        "error: not published: validation failed: tokenizer_config.json is listed in the manifest but missing "
        "(fix: re-run quantize for this model (python -m quantize MODEL ...) into a fresh directory)"
    )
    assert server.requests == []


def test_missing_directory(hub, tmp_path):
    env, server = hub
    missing = tmp_path / "no-such-checkpoint"
    assert error_of(run_cli("publish", missing, "--repo-id", REPO, env=env)) == (
        f"error: not published: checkpoint directory {missing} does not exist (fix: pass the directory quantize wrote)"
    )
    assert server.requests == []


@pytest.mark.parametrize(
    "overrides, line",
    [
        (
            {"HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "", "HF_OIDC_RESOURCE": ""},
            f"error: no Hugging Face token (fix: {TOKEN_FIX})",
        ),
        (
            {"HF_HUB_OFFLINE": "1"},
            "error: Hugging Face offline mode is on (HF_HUB_OFFLINE), so nothing can be uploaded "
            "(fix: run publish with HF_HUB_OFFLINE=0 (the container image sets it to 1))",
        ),
    ],
    ids=["no-token", "offline"],
)
def test_refused_before_any_request(ckpt, hub, overrides, line):
    env, server = hub
    assert error_of(run_cli("publish", ckpt, "--repo-id", REPO, env={**env, **overrides})) == line
    assert server.requests == []


@pytest.mark.parametrize("repo_id", ["no-slash", "a/b/c", "org/bad name"])
def test_bad_repo_id(capsys, tmp_path, repo_id):
    """Checked first: the directory is not even looked at."""
    assert error_of(run_main(capsys, "publish", tmp_path / "no-such-checkpoint", "--repo-id", repo_id)) == (
        f"error: --repo-id {repo_id!r} is not a Hub repository id ORG/NAME (fix: ORG/NAME of letters, digits, "
        "'-', '_' and '.', e.g. --repo-id my-org/DeepSeek-V2-Lite-w4a8)"
    )


def test_refused_token_is_named_not_printed(ckpt, hub):
    env, server = hub
    server.fail = {"create": 401}
    result = run_cli("publish", ckpt, "--repo-id", REPO, env=env)
    assert error_of(result) == (
        f"error: the Hub refused the token for {REPO} (HTTP 401) (fix: use a token with write access to org "
        f"(huggingface.co/settings/tokens): {TOKEN_FIX})"
    )
    assert ("POST", "/api/repos/create", f"Bearer {TOKEN}") in server.requests
    assert TOKEN not in result.stdout + result.stderr
    assert server.commits == []


def test_failed_lfs_upload_is_one_line(ckpt, hub):
    """huggingface_hub wraps a failed LFS PUT in a RuntimeError, and leaves its progress bar open: the HTTP error
    under it is still reported, on the last line."""
    env, server = hub
    server.fail = {"lfs_put": 400}
    oid = sha256_file(ckpt / "model.safetensors")
    assert error_of(run_cli("publish", ckpt, "--repo-id", REPO, env=env)) == (
        f"error: the Hub answered HTTP 400 to PUT /lfs/{oid}: stub refuses lfs_put "
        "(fix: check --repo-id and the token's permissions, then run publish again)"
    )
    assert server.commits == []


def test_xet_failure_is_one_line(ckpt, hub):
    """With hf_xet, an LFS file goes to Xet storage, for which the Hub first grants a write token: the stub does
    not (404), and hf_xet raises a ConnectionError."""
    env, server = hub
    env["HF_HUB_DISABLE_XET"] = "0"
    line = error_of(run_cli("publish", ckpt, "--repo-id", REPO, env=env))
    assert line.startswith("error: the upload to Xet storage failed: ")
    assert f"{server.endpoint}/api/models/{REPO}/xet-write-token/main" in line
    assert line.endswith(f"(fix: check the token's write access to {REPO} and the network, then run publish again)")
    assert server.commits == []


def test_unreachable_hub(ckpt, hub):
    env, _ = hub
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    line = error_of(run_cli("publish", ckpt, "--repo-id", REPO, env={**env, "HF_ENDPOINT": endpoint}))
    assert line.startswith(f"error: cannot reach the Hugging Face Hub at {endpoint}: ")
    assert line.endswith("(fix: check the network connection (and HF_ENDPOINT, if set), then run publish again)")
