"""Bad input: one line that names the fix, a non-zero exit, and nothing written.

Errors raised before any heavy work run in this process (tests.helpers.run_main), as one table; a few run the
real entry point in a fresh process (run_cli), as a user would: a local path, the Hub (huggingface_hub reads
its environment when imported), and a warning from a run that succeeds.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from quantize import output, stream
from quantize.errors import QuantizeError
from quantize.recipe import Recipe
from tests.helpers import Cases, error_line, quantize, run_cli, run_main

SCHEME = ("--scheme", "channelwise")
HUB_FIX = "pass a local model directory or a Hub id such as deepseek-ai/DeepSeek-V2-Lite"
RECOPY_FIX = "download or copy the model again (an interrupted download or copy leaves files incomplete)"
NO_ROOM_FIX = "free space there, or choose --output-root/--output-dir on a filesystem with more room"
CONFIG_FIX = "restore the model's original config.json, or download or copy the model again"
TOKENIZERS = "tokenizer.json, *.model, vocab.json, vocab.txt, *.tiktoken, tekken.json"


def assert_fails(result, line: str, code: int = 2) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert error_line(result) == line
    assert "Traceback" not in result.stderr


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


# Each case prepares its input from the tiny Llama in `tmp` and returns the command line (MODEL first, then
# arguments that override the default `--scheme channelwise --output-root TMP/out`) and the one line expected.
BAD_INPUT = Cases()


@BAD_INPUT.add
def missing_path(model, tmp):
    missing = tmp / "no-such-model"
    return [missing], f"error: model path {missing} is not a directory (fix: {HUB_FIX})"


@BAD_INPUT.add
def directory_that_is_not_a_model(model, tmp):
    (tmp / "empty").mkdir()
    return [tmp / "empty"], (
        f"error: {tmp / 'empty'} is not a Hugging Face model directory (no config.json) "
        "(fix: point MODEL at the directory that holds config.json and the *.safetensors files)"
    )


@BAD_INPUT.add
def model_without_safetensors(model, tmp):
    copy = broken_copy(model, tmp, weights=False)
    return [copy], (
        f"error: {copy} has no *.safetensors weights (fix: convert the checkpoint to "
        "safetensors (transformers save_pretrained does) and retry)"
    )


@BAD_INPUT.add
def group_size_zero(model, tmp):
    argv = [model, "--scheme", "groupwise", "--groupsize", "0"]
    return argv, "error: groupsize must be positive, got 0 (fix: see python -m quantize --help)"


@BAD_INPUT.add
def group_size_that_divides_no_layer(model, tmp):
    return [model, "--scheme", "groupwise", "--groupsize", "48"], (
        "error: --groupsize 48 does not divide the in-features of model.layers.0.self_attn.q_proj "
        "(128) (and 13 more layers); group sizes that divide every quantized layer: 16, 32, 64 "
        "(fix: use --groupsize 64 or --scheme channelwise)"
    )


@BAD_INPUT.add
def unwritable_output(model, tmp):
    blocker = tmp / "a-file"
    blocker.write_text("")
    return [model, "--output-root", blocker], (
        f"error: cannot create the output directory under {blocker}: it is a file "
        "(fix: choose a writable --output-root or --output-dir)"
    )


@BAD_INPUT.add
def trust_remote_code_without_revision(model, tmp):
    return ["deepseek-ai/DeepSeek-V2-Lite", "--trust-remote-code"], (
        "error: --trust-remote-code runs Python code from the Hub repository "
        "deepseek-ai/DeepSeek-V2-Lite, but no --revision pins it (fix: pass --revision <commit sha> "
        "after reviewing that commit's code, or drop --trust-remote-code (transformers 5 runs "
        "DeepSeek-V2 natively))"
    )


@BAD_INPUT.add
def config_without_model_type(model, tmp):
    copy = broken_copy(model, tmp, {"model_type": None}, weights=False)
    return [copy], (
        f"error: config.json of {copy} has no model_type (fix: restore the model's original config.json "
        '(its model_type names the architecture, e.g. "llama"))'
    )


@BAD_INPUT.add
def config_that_is_not_json(model, tmp):
    copy = broken_copy(model, tmp, weights=False)
    (copy / "config.json").write_text('{"model_type": "llama",')
    return [copy], (
        f"error: {copy / 'config.json'} is not valid JSON (Expecting property name enclosed in double quotes: "
        f"line 1 column 24 (char 23)) (fix: {RECOPY_FIX})"
    )


@BAD_INPUT.add
def unknown_model_type(model, tmp):
    import transformers

    copy = broken_copy(model, tmp, {"model_type": "nosuchnet"}, weights=False)
    return [copy], (
        f"error: transformers {transformers.__version__} does not know model type 'nosuchnet' (config.json of "
        f"{copy}) (fix: upgrade transformers, or pass --trust-remote-code if the repository ships its own "
        "modelling code)"
    )


@BAD_INPUT.add
def non_causal_model_type(model, tmp):
    copy = broken_copy(model, tmp, weights=False)
    (copy / "config.json").write_text(json.dumps({"model_type": "t5"}))
    return [copy], (
        f"error: {copy} is a 't5' model, which transformers cannot load as a causal language model "
        "(fix: quantize a causal (decoder-only) language model)"
    )


@BAD_INPUT.add
def already_quantized_model(model, tmp):
    copy = broken_copy(model, tmp, {"quantization_config": {"quant_method": "compressed-tensors"}})
    return [copy], (
        f"error: {copy} is already quantized (its config.json has a quantization_config) "
        "(fix: quantize the original, unquantized model)"
    )


def _truncated_safetensors(model, tmp, engine):
    copy = broken_copy(model, tmp)
    shard = copy / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # an interrupted download or copy
    return [copy, "--engine", engine], (
        f"error: {shard} is not a readable safetensors file (incomplete metadata, file not fully covered) "
        f"(fix: {RECOPY_FIX})"
    )


@BAD_INPUT.add
def truncated_safetensors_engine_auto(model, tmp):
    return _truncated_safetensors(model, tmp, "auto")


@BAD_INPUT.add
def truncated_safetensors_engine_load(model, tmp):
    return _truncated_safetensors(model, tmp, "load")


@BAD_INPUT.add
def git_lfs_pointer_instead_of_weights(model, tmp):
    copy = broken_copy(model, tmp)
    (copy / "model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0123abcd\nsize 903056\n"
    )
    return [copy], (
        f"error: {copy / 'model.safetensors'} is a Git LFS pointer, not the weights (fix: run 'git lfs pull' in {copy})"
    )


@BAD_INPUT.add
def index_that_names_a_missing_shard(model, tmp):
    copy = broken_copy(model, tmp)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    (copy / "model.safetensors").rename(copy / names[0])  # the second shard never arrived
    (copy / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": names[0], "b": names[1]}}))
    return [copy], (
        f"error: {copy / 'model.safetensors.index.json'} names {names[1]}, which is missing (fix: {RECOPY_FIX})"
    )


@BAD_INPUT.add
def gptq_without_tokenizer(model, tmp):
    copy = broken_copy(model, tmp)
    for path in copy.glob("tokenizer*"):
        path.unlink()
    return [copy, "--method", "gptq"], (
        f"error: {copy} has no tokenizer (none of {TOKENIZERS}), and --method gptq needs one to tokenize its "
        f"calibration text (fix: copy the original model's tokenizer files into {copy})"
    )


def _with_tensors(model: Path, tmp: Path, change) -> Path:
    """A copy of `model` whose tensors `change(tensors)` edits in place (dict name -> tensor)."""
    from safetensors.torch import load_file, save_file

    copy = broken_copy(model, tmp)
    tensors = load_file(copy / "model.safetensors")
    change(tensors)
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    return copy


def _config_lie(model, tmp, key, value):
    return broken_copy(model, tmp, {key: value})


@BAD_INPUT.add
def config_hidden_size_that_disagrees_with_the_tensors(model, tmp):
    copy = _config_lie(model, tmp, "hidden_size", 96)
    return [copy], (
        "error: source tensor model.embed_tokens.weight is [413, 128], but config.json implies [413, 96] "
        f"(config.json keys equal to 96: hidden_size) (fix: {CONFIG_FIX})"
    )


@BAD_INPUT.add
def config_with_more_layers_than_the_tensors(model, tmp):
    copy = _config_lie(model, tmp, "num_hidden_layers", 3)
    return [copy, "--engine", "load"], (
        "error: the source has no tensor model.layers.2.self_attn.q_proj.weight (and 8 more), which config.json "
        f"implies (num_hidden_layers is 3; the tensors hold 2 layers) (fix: {CONFIG_FIX})"
    )


@BAD_INPUT.add
def config_with_fewer_layers_than_the_tensors(model, tmp):
    copy = _config_lie(model, tmp, "num_hidden_layers", 1)
    return [copy], (
        "error: source tensor model.layers.1.input_layernorm.weight is in a layer config.json does not have "
        f"(num_hidden_layers is 1; the tensors hold 2 layers) (fix: {CONFIG_FIX})"
    )


def _poisoned(model, tmp, value, engine):
    name = "model.layers.1.mlp.down_proj.weight"
    copy = _with_tensors(model, tmp, lambda t: t[name].view(-1).__setitem__(7, value))
    return [copy, "--engine", engine], (
        f"error: source tensor {name} has 1 non-finite value (NaN or Inf) (fix: repair the source "
        "checkpoint or download it again: quantizing it would give NaN scales)"
    )


@BAD_INPUT.add
def nan_in_a_weight_streamed(model, tmp):
    return _poisoned(model, tmp, float("nan"), "stream")  # the resumable partial directory goes too


@BAD_INPUT.add
def inf_in_a_weight_loaded(model, tmp):
    return _poisoned(model, tmp, float("inf"), "load")


@BAD_INPUT.add
def float8_source_tensor(model, tmp):
    import torch

    name = "model.layers.0.self_attn.q_proj.weight"
    copy = _with_tensors(model, tmp, lambda t: t.__setitem__(name, t[name].to(torch.float8_e4m3fn)))
    return [copy], (
        f"error: source tensor {name} is F8_E4M3: this tool quantizes bf16, fp16 or fp32 weights (fix: "
        "dequantize the checkpoint to bf16 first (DeepSeek-V3's inference/fp8_cast_bf16.py does for its FP8 "
        "weights), then quantize that)"
    )


@BAD_INPUT.add
def fp8_checkpoint(model, tmp):
    fp8 = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
    copy = broken_copy(model, tmp, {"quantization_config": fp8})
    return [copy], (
        f"error: {copy} is an FP8 checkpoint (quantization_config quant_method fp8, as DeepSeek-V3/R1 ship): this "
        "tool quantizes bf16, fp16 or fp32 weights (fix: dequantize it to bf16 first (DeepSeek-V3's "
        "inference/fp8_cast_bf16.py does), then quantize that)"
    )


def _calibration(tmp: Path, name: str, content: bytes) -> tuple[Path, list]:
    (tmp / name).write_bytes(content)
    return tmp / name, ["--method", "gptq", "--calibration", tmp / name]


UTF8_FIX = "give a UTF-8 .txt or .jsonl file"
JSONL_FIX = 'write lines like {"text": "..."}'


NOT_UTF8_FIX = f"{UTF8_FIX} (iconv -t utf-8 converts one)"

# Calibration files that cannot be calibrated on: (case name, file name, bytes, the error, where PATH is the file).
BAD_CALIBRATION = [
    ("calibration_jsonl_that_is_binary", "calib.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
     f"PATH is not UTF-8 text (byte 0 is 89) (fix: {NOT_UTF8_FIX})"),
    ("calibration_txt_that_is_gzip", "calib.txt", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03text",
     f"PATH is not UTF-8 text (byte 1 is 8b) (fix: {NOT_UTF8_FIX})"),
    ("calibration_txt_that_is_valid_utf8_but_binary", "calib.txt",
     b"\x00" * 64 + b"some words after the padding " * 40,
     f"PATH is binary data, not text (a NUL at character 0) (fix: {UTF8_FIX})"),
    ("calibration_txt_that_is_empty", "calib.txt", b" \n\n", "PATH is empty (fix: give a file with some text in it)"),
    ("calibration_jsonl_whose_texts_are_empty", "calib.jsonl", b'{"text": ""}\n{"text": "  "}\n',
     f"PATH: every 'text' field is empty (fix: {JSONL_FIX})"),
    ("calibration_jsonl_without_the_field", "calib.jsonl", b'{"content": "a sentence"}\n',
     f"PATH:1 has no string 'text' field (fix: {JSONL_FIX})"),
]  # fmt: skip


def _bad_calibration(name: str, file: str, content: bytes, message: str):
    def case(model, tmp):
        path, args = _calibration(tmp, file, content)
        return [model, *args], "error: " + message.replace("PATH", str(path))

    case.__name__ = name
    return case


for _row in BAD_CALIBRATION:
    BAD_INPUT.add(_bad_calibration(*_row))


@BAD_INPUT.add
def calibration_shorter_than_one_window(model, tmp):
    from transformers import AutoTokenizer

    text = "Too short to calibrate on."
    path, args = _calibration(tmp, "calib.txt", text.encode())
    tokens = len(AutoTokenizer.from_pretrained(model)(text)["input_ids"])
    return [model, *args, "--calibration-seq-len", "64"], (
        f"error: calibration text {path} has {tokens} tokens, fewer than one window of 64 (fix: give more text "
        "with --calibration, or a shorter --calibration-seq-len)"
    )


def _overwrite(source, out):
    return [source, "--output-dir", out, "--overwrite"], (
        f"error: the output directory {out} is or holds the source model {source}, which --overwrite would "
        "delete (fix: choose an --output-dir outside the source model)"
    )


@BAD_INPUT.add
def overwrite_that_would_delete_the_source(model, tmp):
    copy = broken_copy(model, tmp)
    return _overwrite(copy, copy)


@BAD_INPUT.add
def overwrite_of_a_parent_of_the_source(model, tmp):
    return _overwrite(broken_copy(model, tmp), tmp)


def tree(root: Path) -> dict:
    """Every path under `root` with its size (None for a directory)."""
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else None for p in root.rglob("*")}


@BAD_INPUT.parametrize("case")
def test_bad_input(case, tiny_llama, tmp_path, capsys):
    (model, *args), line = case(tiny_llama, tmp_path)
    before = tree(tmp_path)
    result = run_main(capsys, model, *SCHEME, "--output-root", tmp_path / "out", *args)
    assert_fails(result, line)
    assert tree(tmp_path) == before  # nothing written, changed or deleted (the source model included)


def test_real_entry_point_prints_one_line(tmp_path):
    """The table's first case through `python -m quantize` in a fresh process: exit 2, one line, no traceback."""
    (model, *args), line = missing_path(None, tmp_path)
    result = run_cli(model, *SCHEME, "--output-root", tmp_path / "out", *args)
    assert_fails(result, line)
    assert result.stderr.strip() == line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "model_id,line",
    [
        (
            "org/gated-model",
            "error: org/gated-model is a gated model and this request was not authorized (fix: accept "
            "the model's licence on huggingface.co, then export HF_TOKEN=<a read token> "
            "(or run 'hf auth login'))",
        ),
        (
            "org/no-such-model",
            "error: model org/no-such-model was not found on the Hugging Face Hub (or it is private) "
            "(fix: check the id, or export HF_TOKEN for a private model; for a local model pass an "
            "existing directory)",
        ),
    ],
    ids=["gated", "missing"],
)
def test_hub_refusals(hub, tmp_path, model_id, line):
    env, server = hub
    result = run_cli(model_id, *SCHEME, "--output-root", tmp_path / "out", env=env)
    assert_fails(result, line)
    assert server.requests, "huggingface_hub never reached the stub"
    assert not (tmp_path / "out").exists()


def test_token_is_sent_but_never_printed(hub, tmp_path):
    env, server = hub
    token = "hf_abcdefghijklmnopqrstuvwxyz0123456789"
    result = run_cli("org/gated-model", *SCHEME, "--output-root", tmp_path, env={**env, "HF_TOKEN": token})
    assert result.returncode == 2
    sent = {auth for _, _, auth in server.requests}
    assert f"Bearer {token}" in sent  # huggingface_hub read it from the environment...
    assert token not in result.stdout + result.stderr  # ...and nothing of ours printed it


def test_offline_without_cache(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    result = run_cli("deepseek-ai/DeepSeek-V2-Lite", *SCHEME, "--output-root", tmp_path, env=env)
    assert_fails(
        result,
        "error: model deepseek-ai/DeepSeek-V2-Lite is not in the local Hugging Face cache and the "
        "Hub cannot be reached (fix: connect to the network (and unset HF_HUB_OFFLINE), or set "
        "HF_HOME to the cache that holds it)",
    )


def test_source_without_tokenizer_warns(tiny_llama, tmp_path):
    """Without a tokenizer, minmax and mse still quantize (gptq cannot: see BAD_INPUT), with a one-line warning."""
    (model, *_), _ = gptq_without_tokenizer(tiny_llama, tmp_path)
    out = tmp_path / "out"
    result = run_cli(model, *SCHEME, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {model} has no tokenizer (none of {TOKENIZERS}), so the quantized checkpoint will have none "
        f"and vLLM cannot serve it (fix: copy the original model's tokenizer files into {out} after quantizing)"
    ) in result.stderr.splitlines()
    assert (out / "model.safetensors").is_file()


def test_not_enough_free_space(tiny_llama, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=200 << 10))
    result = run_main(capsys, tiny_llama, *SCHEME, "--output-root", tmp_path / "out")
    needed = stream.estimate_output_bytes(tiny_llama, Recipe(method="mse", scheme="channelwise"))
    assert_fails(
        result,
        f"error: the output needs about {output.human_size(needed)} but the filesystem of {tmp_path} has "
        f"200.0 KiB free (fix: {NO_ROOM_FIX})",
    )
    assert not (tmp_path / "out").exists()


def test_free_space_counts_what_a_resumable_run_left(tmp_path, monkeypatch):
    target = tmp_path / "model-w4a8dyn"
    partial = output.partial_path(target, resumable=True)
    partial.mkdir()
    (partial / "model-00001-of-00002.safetensors").write_bytes(b"\0" * (3 << 20))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=2 << 20))
    output.check_free_space(target, 5 << 20, resumable=True)  # 2 MiB free + 3 MiB to reuse is enough
    with pytest.raises(QuantizeError) as info:
        output.check_free_space(target, 6 << 20, resumable=True)
    assert info.value.format() == (
        f"error: the output needs about 6.0 MiB but the filesystem of {tmp_path} has 2.0 MiB free (and 3.0 MiB "
        f"in {partial.name}, which this run reuses) (fix: {NO_ROOM_FIX})"
    )


def test_output_size_estimate_is_an_upper_bound(tiny_llama, tmp_path):
    recipe = Recipe(method="minmax", scheme="groupwise", groupsize=32)
    out = quantize(tiny_llama, tmp_path / "q", **dataclasses.asdict(recipe))
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
    result = run_main(capsys, tiny_llama, *SCHEME, "--engine", engine, "--output-root", tmp_path)
    target = tmp_path / f"{tiny_llama.name}-w4a8dyn-mse-channelwise"
    kept = f"; the shards finished so far are kept in .{target.name}.partial-resume for a rerun to resume"
    assert_fails(
        result,
        f"error: the filesystem ran out of space while writing {target}{kept if engine == 'stream' else ''} "
        f"(fix: {NO_ROOM_FIX})",
    )
    assert not target.exists()


def test_hub_cache_fills_up_while_downloading(tmp_path, monkeypatch, capsys):
    import errno

    import huggingface_hub

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", full_disk)
    result = run_main(capsys, "org/some-model", *SCHEME, "--output-root", tmp_path)
    assert_fails(
        result,
        "error: the Hugging Face cache ran out of space while downloading org/some-model "
        "(fix: free space there, or set HF_HOME to a filesystem with more room)",
    )
