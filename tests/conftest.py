"""Fixtures: the committed tiny models (tests/tiny_models.py) and a stand-in Hub. Helpers: tests/helpers.py."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import tiny_models


def pytest_collection_modifyitems(items):
    """Every test that starts vLLM is slow too, so `-m "not slow"` leaves them all out."""
    for item in items:
        if item.get_closest_marker("vllm"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _llmcompressor_logs_to_pytests_stderr():
    """llmcompressor points its loguru handler at whatever sys.stderr is when it is first imported. Imported inside
    a test that captures output (capsys), that is the test's buffer, closed when the test ends, and every later
    log line then prints a loguru traceback into another test's stderr. Imported here, it is pytest's own."""
    with contextlib.suppress(ImportError):  # a test environment without the model stack
        import llmcompressor  # noqa: F401


def _copy_fixture(arch: str, tmp_path_factory) -> Path:
    """A private copy of a committed tiny model, so that no test can change the committed bytes."""
    return Path(shutil.copytree(tiny_models.fixture(arch), tmp_path_factory.mktemp("models") / f"tiny-{arch}"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return _copy_fixture("llama", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_deepseek(tmp_path_factory) -> Path:
    return _copy_fixture("deepseek_v2", tmp_path_factory)


@pytest.fixture(scope="session")
def calibration_jsonl(tmp_path_factory) -> Path:
    """Calibration text as a .jsonl file: 200 lines of the tiny models' corpus, another seed than training."""
    path = tmp_path_factory.mktemp("calib") / "calib.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in tiny_models.corpus(lines=200, seed=2)) + "\n")
    return path


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
