"""Bad input: one line that names the fix, a non-zero exit, and nothing written."""

from __future__ import annotations

import shutil

from tests.conftest import error_line, run_cli

SCHEME = ("--scheme", "channelwise")
HUB_FIX = "pass a local model directory or a Hub id such as deepseek-ai/DeepSeek-V2-Lite"


def assert_fails(result, line: str, code: int = 2) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert error_line(result) == line
    assert "Traceback" not in result.stderr


def test_missing_path(tmp_path):
    missing = tmp_path / "no-such-model"
    result = run_cli(str(missing), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(result, f"error: model path {missing} is not a directory (fix: {HUB_FIX})")
    assert not (tmp_path / "out").exists()


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli(str(tmp_path / "empty"), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: {tmp_path / 'empty'} is not a Hugging Face model directory (no config.json) "
        "(fix: point MODEL at the directory that holds config.json and the *.safetensors files)",
    )


def test_model_without_safetensors(tiny_llama, tmp_path):
    model = tmp_path / "bin-only"
    model.mkdir()
    shutil.copy(tiny_llama / "config.json", model)
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: {model} has no *.safetensors weights (fix: convert the checkpoint to "
        "safetensors (transformers save_pretrained does) and retry)",
    )
    assert not (tmp_path / "out").exists()


def test_bad_group_size_values(tiny_llama, tmp_path):
    result = run_cli(str(tiny_llama), "--scheme", "groupwise", "--groupsize", "0", "--output-root", str(tmp_path))
    assert_fails(result, "error: groupsize must be positive, got 0 (fix: see python -m quantize --help)")
    result = run_cli(str(tiny_llama), "--scheme", "groupwise", "--groupsize", "48", "--output-root", str(tmp_path))
    assert_fails(
        result,
        "error: --groupsize 48 does not divide the in-features of model.layers.0.self_attn.q_proj "
        "(128) (and 13 more layers); group sizes that divide every quantized layer: 16, 32, 64 "
        "(fix: use --groupsize 64 or --scheme channelwise)",
    )
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tiny_llama, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli(str(tiny_llama), *SCHEME, "--output-root", str(blocker))
    assert_fails(
        result,
        f"error: cannot create the output directory under {blocker}: it is a file "
        "(fix: choose a writable --output-root or --output-dir)",
    )


def test_gated_model_without_token(hub_stub, tmp_path):
    env, server = hub_stub
    result = run_cli("org/gated-model", *SCHEME, "--output-root", str(tmp_path / "out"), env=env)
    assert_fails(
        result,
        "error: org/gated-model is a gated model and this request was not authorized (fix: accept "
        "the model's licence on huggingface.co, then export HF_TOKEN=<a read token> "
        "(or run 'hf auth login'))",
    )
    assert server.paths, "huggingface_hub never reached the stub"
    assert not (tmp_path / "out").exists()


def test_token_is_sent_but_never_printed(hub_stub, tmp_path):
    env, server = hub_stub
    token = "hf_abcdefghijklmnopqrstuvwxyz0123456789"
    result = run_cli("org/gated-model", *SCHEME, "--output-root", str(tmp_path), env={**env, "HF_TOKEN": token})
    assert result.returncode == 2
    assert f"Bearer {token}" in server.auth  # huggingface_hub read it from the environment...
    assert token not in result.stdout + result.stderr  # ...and nothing of ours printed it


def test_missing_hub_model(hub_stub, tmp_path):
    env, _ = hub_stub
    result = run_cli("org/no-such-model", *SCHEME, "--output-root", str(tmp_path), env=env)
    assert_fails(
        result,
        "error: model org/no-such-model was not found on the Hugging Face Hub (or it is private) "
        "(fix: check the id, or export HF_TOKEN for a private model; for a local model pass an "
        "existing directory)",
    )


def test_offline_without_cache(tmp_path):
    result = run_cli(
        "deepseek-ai/DeepSeek-V2-Lite",
        *SCHEME,
        "--output-root",
        str(tmp_path),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")},
    )
    assert_fails(
        result,
        "error: model deepseek-ai/DeepSeek-V2-Lite is not in the local Hugging Face cache and the "
        "Hub cannot be reached (fix: connect to the network (and unset HF_HUB_OFFLINE), or set "
        "HF_HOME to the cache that holds it)",
    )


def test_trust_remote_code_needs_a_revision_for_hub_models(tmp_path):
    result = run_cli("deepseek-ai/DeepSeek-V2-Lite", *SCHEME, "--trust-remote-code", "--output-root", str(tmp_path))
    assert_fails(
        result,
        "error: --trust-remote-code runs Python code from the Hub repository "
        "deepseek-ai/DeepSeek-V2-Lite, but no --revision pins it (fix: pass --revision <commit sha> "
        "after reviewing that commit's code, or drop --trust-remote-code (transformers 5 runs "
        "DeepSeek-V2 natively))",
    )
