"""Bad input: one line that names the fix, a non-zero exit, and nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from quantize import cli, output, stream
from quantize.recipe import Recipe
from tests.conftest import error_line, run_cli

SCHEME = ("--scheme", "channelwise")
HUB_FIX = "pass a local model directory or a Hub id such as deepseek-ai/DeepSeek-V2-Lite"
RECOPY_FIX = "download or copy the model again (an interrupted download or copy leaves files incomplete)"
NO_ROOM_FIX = "free space there, or choose --output-root/--output-dir on a filesystem with more room"
TOKENIZERS = "tokenizer.json, *.model, vocab.json, vocab.txt, *.tiktoken, tekken.json"


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


def broken_copy(model: Path, tmp_path: Path, config: dict | None = None, weights: bool = True) -> Path:
    """A copy of `model` (config.json only unless `weights`), with `config` merged into its config.json (a None
    value deletes the key)."""
    copy = tmp_path / "broken"
    if weights:
        shutil.copytree(model, copy)
    else:
        copy.mkdir()
        shutil.copy(model / "config.json", copy)
    merged = {**json.loads((model / "config.json").read_text()), **(config or {})}
    (copy / "config.json").write_text(json.dumps({k: v for k, v in merged.items() if v is not None}))
    return copy


def run_in_process(capsys, *args: str) -> tuple[int, str]:
    """`python -m quantize ARGS` in this process (so a test can monkeypatch it): exit code, last stderr line."""
    code = cli.main(list(args))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return code, lines[-1] if lines else ""


def test_config_without_model_type(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path, {"model_type": None}, weights=False)
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: config.json of {model} has no model_type (fix: restore the model's original config.json "
        '(its model_type names the architecture, e.g. "llama"))',
    )
    assert not (tmp_path / "out").exists()


def test_config_that_is_not_json(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path, weights=False)
    (model / "config.json").write_text('{"model_type": "llama",')
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: {model / 'config.json'} is not valid JSON (Expecting property name enclosed in double quotes: "
        f"line 1 column 24 (char 23)) (fix: {RECOPY_FIX})",
    )


def test_unknown_and_non_causal_model_types(tiny_llama, tmp_path):
    import transformers

    model = broken_copy(tiny_llama, tmp_path, {"model_type": "nosuchnet"}, weights=False)
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: transformers {transformers.__version__} does not know model type 'nosuchnet' (config.json of "
        f"{model}) (fix: upgrade transformers, or pass --trust-remote-code if the repository ships its own "
        "modelling code)",
    )
    (model / "config.json").write_text(json.dumps({"model_type": "t5"}))
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: {model} is a 't5' model, which transformers cannot load as a causal language model "
        "(fix: quantize a causal (decoder-only) language model)",
    )


def test_already_quantized_model(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path, {"quantization_config": {"quant_method": "compressed-tensors"}})
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: {model} is already quantized (its config.json has a quantization_config) "
        "(fix: quantize the original, unquantized model)",
    )


def test_truncated_safetensors(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path)
    shard = model / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # an interrupted download or copy
    for engine in ("auto", "load"):
        result = run_cli(str(model), *SCHEME, "--engine", engine, "--output-root", str(tmp_path / "out"))
        assert_fails(
            result,
            f"error: {shard} is not a readable safetensors file (incomplete metadata, file not fully covered) "
            f"(fix: {RECOPY_FIX})",
        )
    assert not (tmp_path / "out").exists()


def test_git_lfs_pointer_instead_of_weights(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path)
    (model / "model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0123abcd\nsize 903056\n"
    )
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: {model / 'model.safetensors'} is a Git LFS pointer, not the weights "
        f"(fix: run 'git lfs pull' in {model})",
    )


def test_index_that_names_a_missing_shard(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    (model / "model.safetensors").rename(model / names[0])  # the second shard never arrived
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": names[0], "b": names[1]}}))
    result = run_cli(str(model), *SCHEME, "--output-root", str(tmp_path / "out"))
    assert_fails(
        result,
        f"error: {model / 'model.safetensors.index.json'} names {names[1]}, which is missing (fix: {RECOPY_FIX})",
    )


def test_overwrite_would_delete_the_source(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path)
    for out in (model, tmp_path):
        result = run_cli(str(model), *SCHEME, "--output-dir", str(out), "--overwrite")
        assert_fails(
            result,
            f"error: the output directory {out} is or holds the source model {model}, which --overwrite would "
            "delete (fix: choose an --output-dir outside the source model)",
        )
    assert (model / "model.safetensors").stat().st_size == (tiny_llama / "model.safetensors").stat().st_size


def test_not_enough_free_space(tiny_llama, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=200 << 10))
    code, line = run_in_process(capsys, str(tiny_llama), *SCHEME, "--output-root", str(tmp_path / "out"))
    needed = stream.estimate_output_bytes(tiny_llama, Recipe(method="mse", scheme="channelwise"))
    assert code == 2
    assert line == (
        f"error: the output needs about {output.human_size(needed)} but the filesystem of {tmp_path} has "
        f"200.0 KiB free (fix: {NO_ROOM_FIX})"
    )
    assert not (tmp_path / "out").exists()


def test_free_space_counts_what_a_resumable_run_left(tmp_path, monkeypatch):
    target = tmp_path / "model-w4a8dyn"
    partial = output.partial_path(target, resumable=True)
    partial.mkdir()
    (partial / "model-00001-of-00002.safetensors").write_bytes(b"\0" * (3 << 20))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=2 << 20))
    output.check_free_space(target, 5 << 20, resumable=True)  # 2 MiB free + 3 MiB to reuse is enough
    with pytest.raises(cli.QuantizeError) as info:
        output.check_free_space(target, 6 << 20, resumable=True)
    assert info.value.format() == (
        f"error: the output needs about 6.0 MiB but the filesystem of {tmp_path} has 2.0 MiB free (and 3.0 MiB "
        f"in {partial.name}, which this run reuses) (fix: {NO_ROOM_FIX})"
    )


def test_output_size_estimate_is_an_upper_bound(tiny_llama, tmp_path):
    from quantize import quantizer

    recipe = Recipe(method="minmax", scheme="groupwise", groupsize=32)
    out = quantizer.run(quantizer.Job(model_id=str(tiny_llama), recipe=recipe, output_dir=tmp_path / "q"))
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert written <= stream.estimate_output_bytes(tiny_llama, recipe) <= written + (2 << 20)


@pytest.mark.parametrize("engine", ["stream", "load"])
def test_disk_fills_up_while_writing(tiny_llama, tmp_path, monkeypatch, capsys, engine):
    import safetensors.torch
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # half-written
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)  # the streaming engine's writer
    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full_disk)  # oneshot's (save_pretrained)
    code, line = run_in_process(capsys, str(tiny_llama), *SCHEME, "--engine", engine, "--output-root", str(tmp_path))
    target = tmp_path / f"{tiny_llama.name}-w4a8dyn-mse-channelwise"
    kept = f"; the shards finished so far are kept in .{target.name}.partial-resume for a rerun to resume"
    assert code == 2
    assert line == (
        f"error: the filesystem ran out of space while writing {target}{kept if engine == 'stream' else ''} "
        f"(fix: {NO_ROOM_FIX})"
    )
    assert not target.exists()


def test_source_without_tokenizer(tiny_llama, tmp_path):
    model = broken_copy(tiny_llama, tmp_path)
    for path in model.glob("tokenizer*"):
        path.unlink()
    out = tmp_path / "out"
    result = run_cli(str(model), "--method", "gptq", *SCHEME, "--output-dir", str(out))
    assert_fails(
        result,
        f"error: {model} has no tokenizer (none of {TOKENIZERS}), and --method gptq needs one to tokenize its "
        f"calibration text (fix: copy the original model's tokenizer files into {model})",
    )
    result = run_cli(str(model), *SCHEME, "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {model} has no tokenizer (none of {TOKENIZERS}), so the quantized checkpoint will have none "
        f"and vLLM cannot serve it (fix: copy the original model's tokenizer files into {out} after quantizing)"
    ) in result.stderr.splitlines()
    assert (out / "model.safetensors").is_file()


def test_hub_cache_fills_up_while_downloading(tmp_path, monkeypatch, capsys):
    import errno

    import huggingface_hub

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", full_disk)
    code, line = run_in_process(capsys, "org/some-model", *SCHEME, "--output-root", str(tmp_path))
    assert code == 2
    assert line == (
        "error: the Hugging Face cache ran out of space while downloading org/some-model "
        "(fix: free space there, or set HF_HOME to a filesystem with more room)"
    )
