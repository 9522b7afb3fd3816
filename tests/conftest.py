"""Session fixtures: the committed tiny models (tests/tiny_models.py), and helpers to run the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import tiny_models

ROOT = Path(__file__).resolve().parent.parent


def _copy_fixture(arch: str, tmp_path_factory) -> Path:
    """A private copy of a committed tiny model, so that no test can change the committed bytes."""
    return Path(shutil.copytree(tiny_models.fixture(arch), tmp_path_factory.mktemp("models") / f"tiny-{arch}"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return _copy_fixture("llama", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_deepseek(tmp_path_factory) -> Path:
    return _copy_fixture("deepseek_v2", tmp_path_factory)


def read_tensors(directory: Path) -> dict:
    """Every tensor of a checkpoint directory, by name (all shards)."""
    from safetensors import safe_open

    out = {}
    for shard in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(shard, "pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m quantize ARGS` in a fresh process, as a user would run it."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "quantize", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The last line of stderr: where the CLI prints its one-line error."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class _HubStub(BaseHTTPRequestHandler):
    """Answers every Hub API call the way huggingface.co does for a gated or a missing repository."""

    def do_GET(self):  # noqa: N802
        self.server.paths.append(self.path)
        self.server.auth.append(self.headers.get("Authorization", ""))
        if "/gated-model" in self.path:
            code, error = 401, "GatedRepo"
            message = "Access to model org/gated-model is restricted. You must have access to it and be authenticated."
        else:
            code, error, message = 404, "RepoNotFound", "Repository not found"
        self.send_response(code)
        self.send_header("X-Error-Code", error)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"error": message}).encode())

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def hub_stub(tmp_path):
    """A loopback stand-in for huggingface.co; yields the env that points huggingface_hub at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubStub)
    server.paths, server.auth = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    yield env, server
    server.shutdown()
