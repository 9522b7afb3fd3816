"""The calibrated methods on the tiny models: real llmcompressor GPTQ (`--method gptq`), the importance-matrix
observer (`--method imatrix`) and AWQ smoothing then GPTQ (`--method awq-gptq`), calibration text from every kind
of source."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantize import checkpoint, corpus, manifest, validate
from tests.helpers import error_line, quantize, read_tensors, run_cli, run_main
from tools import faults


@pytest.mark.slow  # about 30 s: a GPTQ run and a rounding run, each in a fresh process
def test_gptq_quantizes_validates_and_differs_from_rounding(tiny_llama, calibration_jsonl, tmp_path):
    args = ["--scheme", "groupwise", "--output-root", str(tmp_path), "--calibration-seq-len", "64"]
    result = run_cli(str(tiny_llama), "--method", "gptq", *args, "--calibration", str(calibration_jsonl))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "tiny-llama-w4a8dyn-gptq-groupwise-g32"
    assert "weights offloaded to disk" in result.stderr  # auto: gptq runs text through the model, offloaded
    assert validate.validate(out)["valid"]
    info = manifest.read(out)
    assert info["arguments"]["method"] == "gptq" and info["arguments"]["engine"] == "offload"
    calibration = info["arguments"]["calibration"]
    assert calibration["source"] == str(calibration_jsonl) and calibration["tokens"] > 64
    assert calibration["samples"] == -(-calibration["tokens"] // 64)
    # same format as minmax/mse, different int4 values: GPTQ changed the rounding
    assert run_cli(str(tiny_llama), "--method", "mse", *args).returncode == 0
    gptq, rtn = read_tensors(out), read_tensors(tmp_path / "tiny-llama-w4a8dyn-mse-groupwise-g32")
    assert gptq.keys() == rtn.keys()
    name = "model.layers.0.mlp.down_proj.weight"
    assert gptq[name].dtype == rtn[name].dtype and not (gptq[name] == rtn[name]).all()


@pytest.fixture(scope="module")
def imatrix(tiny_llama, calibration_jsonl, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imatrix") / "g32"
    return quantize(tiny_llama, out, method="imatrix", scheme="groupwise", calibration=str(calibration_jsonl),
                    calibration_seq_len=64)  # fmt: skip


def test_imatrix_weighs_by_the_calibration_text(imatrix, tiny_llama, calibration_jsonl, tmp_path):
    """Same format as the seed's; the scales follow the activations: other text, other int4 values. (Without
    statistics llmcompressor's imatrix observer silently falls back to plain mse: this would catch it.)"""
    assert validate.validate(imatrix)["valid"]
    weights = checkpoint.quantization_config(imatrix)["config_groups"]["group_0"]["weights"]
    assert weights["observer"] == "imatrix_mse" and weights["observer_kwargs"]["norm"] == 2.0
    info = manifest.read(imatrix)
    assert info["arguments"]["engine"] == "load" and info["arguments"]["calibration"]["tokens"] > 64
    card = (imatrix / "README.md").read_text()  # the card's command redoes the same calibration
    assert "method `imatrix`, observer `imatrix_mse`" in card
    assert f"--calibration {calibration_jsonl} --calibration-samples" in card and "--calibration-seq-len 64" in card
    other = quantize(tiny_llama, tmp_path / "other", method="imatrix", scheme="groupwise", calibration_seq_len=64)
    first, second = read_tensors(imatrix), read_tensors(other)
    assert first.keys() == second.keys()
    differing = [k for k in first if k.endswith("_scale") and not first[k].equal(second[k])]
    assert differing, "the imatrix scales do not depend on the calibration text"


def test_imatrix_on_moe_quantizes_every_expert(tiny_deepseek, calibration_jsonl, tmp_path):
    """DeepSeek-V2 (MLA + MoE): experts see only the tokens routed to them; every one still gets its scales."""
    out = quantize(tiny_deepseek, tmp_path / "moe", method="imatrix", scheme="groupwise",
                   calibration=str(calibration_jsonl), calibration_seq_len=64)  # fmt: skip
    report = validate.validate(out)
    assert report["valid"] and checkpoint.has_quantized_experts(out)


def assert_passes_reference_check(directory: Path) -> None:
    """`smoke --reference` exits 0, its vLLM-vs-reference agreement passed, and it ran W4A8 Linear layers."""
    code, report, stderr = faults.smoke(str(directory), "--reference", timeout=600)
    assert code == 0, stderr[-3000:]
    assert report["agreement"]["passed"] and report["layers"]["w4a8_linear_layers"] > 0


@pytest.mark.vllm
def test_imatrix_checkpoint_passes_the_reference_check(imatrix):
    assert_passes_reference_check(imatrix)


@pytest.fixture(scope="module")
def awq_gptq_moe(tiny_deepseek, calibration_jsonl, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("awq-gptq") / "moe"
    return quantize(tiny_deepseek, out, method="awq-gptq", scheme="groupwise", engine="offload",
                    calibration=str(calibration_jsonl), calibration_seq_len=64)  # fmt: skip


def test_awq_gptq_on_moe_smooths_everything_but_the_router_input(awq_gptq_moe, tiny_deepseek):
    """DeepSeek-V2: AWQ folds its scales into the attention's input norm (changed), never into the MLP's input
    norm, which also feeds the router (bit-identical to the source); GPTQ then quantizes every expert."""
    assert validate.validate(awq_gptq_moe)["valid"] and checkpoint.has_quantized_experts(awq_gptq_moe)
    source, out = read_tensors(tiny_deepseek), read_tensors(awq_gptq_moe)
    mlp_norms = [k for k in source if k.endswith("post_attention_layernorm.weight")]
    attention_norms = [k for k in source if k.endswith(".input_layernorm.weight")]
    assert mlp_norms and all(out[k].equal(source[k]) for k in mlp_norms)
    assert [k for k in attention_norms if not out[k].equal(source[k])], "AWQ smoothed no attention input"
    recipe = (awq_gptq_moe / "recipe.yaml").read_text()
    assert "AWQModifier" in recipe and "GPTQModifier" in recipe and "post_attention_layernorm" not in recipe
    assert manifest.read(awq_gptq_moe)["arguments"]["method"] == "awq-gptq"


@pytest.mark.vllm
def test_awq_gptq_checkpoint_passes_the_reference_check(tiny_llama, calibration_jsonl, tmp_path):
    out = quantize(tiny_llama, tmp_path / "awq-gptq", method="awq-gptq", scheme="groupwise", engine="offload",
                   calibration=str(calibration_jsonl), calibration_seq_len=64)  # fmt: skip
    assert_passes_reference_check(out)


def test_gptq_cannot_stream(tiny_llama, tmp_path, capsys):
    result = run_main(capsys, tiny_llama, "--method", "gptq", "--scheme", "channelwise", "--engine", "stream",
                      "--output-root", tmp_path)  # fmt: skip
    assert result.returncode == 2 and "cannot quantize with --method gptq" in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_builtin_corpora_are_separate_and_load():
    evaluation, calibration = corpus.load_texts("builtin:eval")[0], corpus.load_texts("builtin:calibration")[0]
    assert len(evaluation) > 15_000 and len(calibration) > 7_000
    assert not set(evaluation.split("\n\n")) & set(calibration.split("\n\n"))


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"text": "a"}\nnot json\n', ":2 is not JSON"),
        ('{"body": "a"}\n', "has no string 'text' field"),
        ("\n\n", "has no records"),
    ],
)
def test_bad_jsonl_is_one_line_error(tiny_llama, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    result = run_main(capsys, tiny_llama, "--method", "gptq", "--scheme", "channelwise", "--calibration", bad,
                      "--output-root", tmp_path / "out")  # fmt: skip
    assert result.returncode == 2 and message in error_line(result) and "(fix: " in error_line(result)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_hub_dataset_offline_is_one_line_error(tiny_llama, tmp_path):
    result = run_cli(str(tiny_llama), "--method", "gptq", "--scheme", "channelwise", "--calibration",
                     "hub:org/some-dataset@train", "--output-root", str(tmp_path))  # fmt: skip
    assert result.returncode == 2 and "could not load Hub dataset 'org/some-dataset'" in error_line(result)


def test_token_windows():
    class Tok:
        def __call__(self, text):
            return {"input_ids": list(range(len(text.split())))}

    windows = corpus.token_windows(Tok(), ["a b c d e", "f g h"], seq_len=3)
    assert [len(w) for w in windows] == [3, 3, 2]
    assert corpus.token_windows(Tok(), ["a b c d"], seq_len=3) == [[0, 1, 2]]  # a 1-token tail scores nothing
    assert len(corpus.token_windows(Tok(), ["a " * 30], seq_len=3, max_windows=4)) == 4


def test_too_little_calibration_text_warns(tiny_llama):
    import torch
    from transformers import AutoModelForCausalLM

    from quantize.calibration import calibration_warning, widest_input
    from quantize.recipe import Recipe

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    widest = widest_input(model, Recipe(method="gptq"))
    assert widest == model.config.intermediate_size  # down_proj, the widest quantized layer
    warning = calibration_warning(1_642, widest)
    assert warning.startswith("Warning: 1,642 calibration tokens for layers with up to 320 inputs")
    assert "at least 3,200 tokens" in warning and "make wikipedia" in warning
    assert calibration_warning(3_200, widest) is None
