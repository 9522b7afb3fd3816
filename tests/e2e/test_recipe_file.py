"""`--recipe FILE.yaml`: an llmcompressor recipe instead of --method/--scheme, refused unless it writes the W4A8
scheme vLLM serves on CPU. Real llmcompressor on the tiny models; the example recipes under recipes/."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from quantize import card, checkpoint, manifest, validate
from quantize.contract import EXPERTS_PATTERN
from quantize.errors import QuantizeError
from quantize.recipe_file import parse_modifiers
from tests.helpers import ROOT, quantize, read_tensors, run_main
from tools import faults

RECIPES = ROOT / "recipes"
W4A8 = """        group_0:
          targets: [Linear]
          weights: {num_bits: 4, type: int, symmetric: true, strategy: group, group_size: 32, dynamic: false%s}
          input_activations: {num_bits: 8, type: int, symmetric: false, strategy: token, dynamic: true}
"""


def recipe_text(modifier: str = "QuantizationModifier", weights_extra: str = "", before: str = "") -> str:
    return (
        "default_stage:\n  default_modifiers:\n"
        + before
        + f"    {modifier}:\n      config_groups:\n"
        + W4A8 % weights_extra
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# Calibration for the tiny models: windows of 64 tokens, as many as the built-in text fills (with 16 windows, AWQ
# measured no gain from smoothing the tiny Llama's first norm, so the test that it smooths would fail).
TINY_CALIBRATION = {"calibration_seq_len": 64}


def quantize_file(model: Path, recipe: Path, out: Path, **options) -> Path:
    return quantize(model, out, recipe_file=recipe, **TINY_CALIBRATION, **options)


@pytest.fixture(scope="module")
def awq_llama(quantized) -> Path:
    """The tiny Llama through recipes/awq-mse-g32.yaml, shared by the session (conftest `quantized`)."""
    return quantized("tiny_llama", recipe_file=RECIPES / "awq-mse-g32.yaml", **TINY_CALIBRATION)


@pytest.fixture(scope="module")
def seed_as_file(tiny_llama, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipe")
    return quantize_file(tiny_llama, RECIPES / "w4a8-mse-g32.yaml", root / "tiny-llama-w4a8dyn-w4a8-mse-g32")


def test_the_seed_as_a_recipe_file_writes_the_seeds_weights(seed_as_file, tiny_llama, tmp_path):
    """recipes/w4a8-mse-g32.yaml is `--method mse --scheme groupwise --groupsize 32` spelled as a file: same
    tensors, bit for bit; the checkpoint records the file and keeps its text as recipe.yaml."""
    assert validate.validate(seed_as_file)["valid"]
    seed = quantize(tiny_llama, tmp_path / "seed", method="mse", scheme="groupwise")
    ours, theirs = read_tensors(seed_as_file), read_tensors(seed)
    assert ours.keys() == theirs.keys()
    assert all(ours[k].equal(theirs[k]) for k in ours)
    args = manifest.read(seed_as_file)["arguments"]
    assert (args["method"], args["scheme"], args["groupsize"], args["observer"]) == ("recipe", "groupwise", 32, "mse")
    assert (seed_as_file / card.RECIPE).read_text() == (RECIPES / "w4a8-mse-g32.yaml").read_text()
    readme = (seed_as_file / "README.md").read_text()
    assert f"--recipe {RECIPES / 'w4a8-mse-g32.yaml'}" in readme and "recipe file" in readme


def test_cli_names_the_output_after_the_file(capsys, tiny_llama, tmp_path):
    recipe = write(tmp_path, "my-recipe-g32.yaml", recipe_text(weights_extra=", observer: minmax"))
    result = run_main(capsys, tiny_llama, "--recipe", recipe, "--output-root", tmp_path, "--calibration-seq-len", 64)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "tiny-llama-w4a8dyn-my-recipe-g32"
    assert result.stdout.strip() == str(out.absolute()) and validate.validate(out)["valid"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (recipe_text(weights_extra=", observer: mse").replace("symmetric: true", "symmetric: false"),
         "weights.symmetric is False, the W4A8-dynamic recipe needs True"),
        (recipe_text("GPTQModifier", ", actorder: group"), "weights.actorder: Value error, actorder='group' has been"),
        (recipe_text(weights_extra=", actorder: dynamic"), "QuantizationModifier config_groups.group_0.weights"),
        ("default_stage:\n  default_modifiers:\n    QuantizationModifier: {scheme: W8A8, targets: [Linear]}\n",
         "weights.num_bits is 8, the W4A8-dynamic recipe needs 4"),
        ("default_stage:\n  default_modifiers:\n    QuantizationModifier: {scheme: W4A16, targets: [Linear]}\n",
         "input_activations.num_bits is None"),
        (recipe_text(weights_extra=", observer: mse", before="    AWQModifier: {}\n").replace(
            "QuantizationModifier", "GPTQModifier") + "    QuantizationModifier:\n      config_groups:\n"
         + W4A8.replace("group_size: 32", "group_size: 16") % "", "quantizes with 2 different schemes"),
        ("default_stage:\n  default_modifiers:\n    SmoothQuantModifier: {}\n", "quantizes nothing"),
        ("default_stage:\n  default_modifiers:\n    NoSuchModifier: {}\n", "is not an llmcompressor recipe"),
        ("just: [a, list\n", "is not an llmcompressor recipe"),
    ],
    ids=["asymmetric", "gptq-actorder-group", "actorder-without-gptq", "w8a8", "w4a16", "two-schemes",
         "no-quantizer", "unknown-modifier", "yaml"],
)  # fmt: skip
def test_unservable_recipes_are_refused_before_loading(capsys, tiny_llama, tmp_path, text, message):
    recipe = write(tmp_path, "bad.yaml", text)
    result = run_main(capsys, tiny_llama, "--recipe", recipe, "--output-root", tmp_path)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1], result.stderr[-2000:]
    assert "(fix: " in result.stderr.splitlines()[-1]
    assert not list(tmp_path.glob("tiny-llama*"))  # nothing written


def test_recipe_option_conflicts(capsys, tiny_llama, tmp_path):
    recipe = RECIPES / "w4a8-mse-g32.yaml"
    both = run_main(capsys, tiny_llama, "--recipe", recipe, "--scheme", "groupwise")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    method = run_main(capsys, tiny_llama, "--recipe", recipe, "--method", "gptq")
    assert method.returncode == 2 and "--recipe sets the method, group size and AWQ grid itself" in method.stderr
    missing = run_main(capsys, tiny_llama, "--recipe", tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    neither = run_main(capsys, tiny_llama)
    assert neither.returncode == 2 and "one of the arguments --scheme --recipe is required" in neither.stderr


def test_online_rotations_are_refused_after_quantizing_and_nothing_is_left(tiny_llama, tmp_path):
    """QuIP's input rotation is online (applied to activations at run time), which vLLM's CPU build cannot do:
    the scheme passes the check before loading, the written config does not, and no output directory stays."""
    recipe = write(
        tmp_path, "quip-g32.yaml",
        recipe_text(before="    QuIPModifier: {rotations: [v, u], transform_type: random-hadamard}\n"),
    )  # fmt: skip
    with pytest.raises(QuantizeError, match="wrote a checkpoint vLLM cannot serve: .*online transforms"):
        quantize_file(tiny_llama, recipe, tmp_path / "quip", engine="auto")  # auto loads it: QuIP rotates
    assert not (tmp_path / "quip").exists() and not list(tmp_path.glob(".quip*"))
    with pytest.raises(QuantizeError, match=r"rotates weights \(QuIPModifier\), which cannot run with the weights"):
        quantize_file(tiny_llama, recipe, tmp_path / "quip", engine="offload")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda qc: qc["config_groups"]["group_0"]["weights"].update(actorder="dynamic"),
         "weights.actorder is 'dynamic'"),
        (lambda qc: qc.update(transform_config={"config_groups": {"u": {"type": "hadamard", "apply": [
            {"targets": ["Linear"], "location": "input"}]}}}), "online transforms (u)"),
    ],
    ids=["actorder", "online-transform"],
)  # fmt: skip
def test_validate_refuses_what_vllm_cpu_cannot_serve(seed_as_file, tmp_path, edit, message):
    broken = Path(shutil.copytree(seed_as_file, tmp_path / "broken"))
    config = json.loads((broken / "config.json").read_text())
    edit(config["quantization_config"])
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(QuantizeError, match="validation failed") as exc:
        validate.validate(broken)
    assert message in exc.value.message


@pytest.mark.slow  # AWQ's grid search over every mapping: about 30 s
def test_awq_recipe_smooths_and_stays_servable(tiny_llama, awq_llama):
    assert validate.validate(awq_llama)["valid"]
    source, awq = read_tensors(tiny_llama), read_tensors(awq_llama)
    norm = "model.layers.0.input_layernorm.weight"
    assert not awq[norm].equal(source[norm])  # AWQ folded its scales into the norm


@pytest.mark.slow
def test_moe_safe_awq_keeps_every_router_input_exact(tiny_deepseek, tmp_path):
    """DeepSeek-V2: the norm that feeds the router (post_attention_layernorm) is left exactly as it was, while
    the attention norm is smoothed; the router gates stay unquantized and every expert is quantized."""
    out = quantize_file(tiny_deepseek, RECIPES / "deepseek-v2-awq-mse-g32.yaml", tmp_path / "moe")
    report = validate.validate(out)
    assert report["valid"] and checkpoint.has_quantized_experts(out)
    source, awq = read_tensors(tiny_deepseek), read_tensors(out)
    feeding_router = [k for k in source if k.endswith("post_attention_layernorm.weight")]
    assert feeding_router and all(awq[k].equal(source[k]) for k in feeding_router)
    attention = [k for k in source if k.endswith("input_layernorm.weight")]
    assert any(not awq[k].equal(source[k]) for k in attention)
    assert any(m.endswith("mlp.gate") for m in report["ignored_modules"])


@pytest.mark.slow
def test_moe_awq_gptq_without_routed_experts_smooths_only_dense_and_shared_mlps(tiny_deepseek, tmp_path):
    """recipes/deepseek-v2-awq-gptq-g32-shared.yaml: its up_proj -> down_proj mapping matches the dense and the
    shared experts' MLPs and no routed expert (llmcompressor matches `re:` patterns against module names); the
    router's input norm stays exact; GPTQ still quantizes every expert."""
    recipe = RECIPES / "deepseek-v2-awq-gptq-g32-shared.yaml"
    awq, gptq = parse_modifiers(recipe.read_text())
    assert type(awq).__name__ == "AWQModifier" and type(gptq).__name__ == "GPTQModifier"
    mlp = next(m for m in awq.mappings if "up_proj" in m.smooth_layer)
    source = read_tensors(tiny_deepseek)
    modules = {k.rsplit(".", 1)[0] for k in source if k.endswith("up_proj.weight")}
    smoothed = {m for m in modules if re.match(mlp.smooth_layer.removeprefix("re:"), m)}
    routed = {m for m in modules if re.match(EXPERTS_PATTERN.removeprefix("re:"), m)}
    assert routed and smoothed and not smoothed & routed and smoothed == modules - routed
    out = quantize_file(tiny_deepseek, recipe, tmp_path / "shared")
    assert validate.validate(out)["valid"] and checkpoint.has_quantized_experts(out)
    written = read_tensors(out)
    feeding_router = [k for k in source if k.endswith("post_attention_layernorm.weight")]
    assert feeding_router and all(written[k].equal(source[k]) for k in feeding_router)


@pytest.mark.vllm
def test_awq_checkpoint_passes_the_reference_check(awq_llama):
    code, report, stderr = faults.smoke(str(awq_llama), "--reference", timeout=600)
    assert code == 0, stderr[-3000:]
