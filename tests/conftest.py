"""Fixtures: the committed tiny models (tests/tiny_models.py), their quantized checkpoints shared by the session, and
a stand-in Hub (tests/hub.py). Helpers: tests/helpers.py."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from quantize import hashing
from tests import helpers, tiny_models
from tests import hub as hub_stub


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
def quantized(tiny_llama, tiny_deepseek, tmp_path_factory):
    """Quantize a tiny model once per session, for every test that only reads the result.

    `quantized("tiny_llama", method="minmax", scheme="groupwise")` ("tiny_llama" or "tiny_deepseek", the fixtures'
    names; options as helpers.quantize) returns the same directory each time the same options are asked for. A
    test that changes a checkpoint copies it first: the session ends in an error naming any shared checkpoint
    whose files changed."""
    models = {"tiny_llama": tiny_llama, "tiny_deepseek": tiny_deepseek}
    root = tmp_path_factory.mktemp("quantized")
    made: dict[tuple, tuple[Path, dict]] = {}

    def get(model: str, **options) -> Path:
        key = (model, *sorted(options.items()))
        if key not in made:
            out = helpers.quantize(models[model], output_root=root / str(len(made)), **options)
            made[key] = out, hashing.file_hashes(out)
        return made[key][0]

    yield get
    changed = [str(out) for out, hashes in made.values() if hashing.file_hashes(out) != hashes]
    assert not changed, f"a test changed a shared checkpoint of the `quantized` fixture (copy it first): {changed}"


@pytest.fixture(scope="session")
def calibration_jsonl(tmp_path_factory) -> Path:
    """Calibration text as a .jsonl file: 200 lines of the tiny models' corpus, another seed than training."""
    path = tmp_path_factory.mktemp("calib") / "calib.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in tiny_models.corpus(lines=200, seed=2)) + "\n")
    return path


@pytest.fixture
def hub(tmp_path):
    """The loopback stand-in for huggingface.co (tests/hub.py): yields the environment that points
    huggingface_hub at it, with no token, and the server, which records what it was asked."""
    with hub_stub.serve(tmp_path / "hf-home") as (env, server):
        yield env, server
