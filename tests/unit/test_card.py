"""The model card (README.md) and recipe.yaml every checkpoint carries: what they say, and that what they tell a
user to run reproduces the checkpoint. (eval's update of the card is checked in test_eval.py, with vLLM.)"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from quantize import card, manifest
from tests.helpers import quantize, read_tensors, run_cli

LICENCE = "---\nlicense: other\nlicense_name: deepseek\nlicense_link: LICENSE\ntags:\n- x\n---\n\n# Source card\n"


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def code_lines(text: str, section: str) -> list[str]:
    """The lines of the first ```bash block under `## section`, continuation lines joined."""
    body = text.split(f"## {section}\n", 1)[1]
    block = body.split("```bash\n", 1)[1].split("```", 1)[0]
    return block.replace("\\\n", " ").splitlines()


@pytest.fixture(scope="module")
def source(tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama with a source model card that has licence fields (as DeepSeek-V2-Lite's has)."""
    src = Path(shutil.copytree(tiny_llama, tmp_path_factory.mktemp("card-src") / "tiny-llama"))
    (src / "README.md").write_text(LICENCE)
    return src


@pytest.fixture(scope="module")
def ckpt(source, tmp_path_factory) -> Path:
    return quantize(source, output_root=tmp_path_factory.mktemp("card"), method="minmax", scheme="groupwise")


def test_card_front_matter_and_contents(ckpt):
    text = (ckpt / "README.md").read_text()
    meta = front_matter(text)
    assert meta["library_name"] == "vllm" and "w4a8" in meta["tags"]
    assert (meta["license"], meta["license_name"], meta["license_link"]) == ("other", "deepseek", "LICENSE")
    assert "base_model" not in meta  # a local source has no Hub id
    assert f"# {ckpt.name}\n" in text and "in groups of 32 inputs; method `minmax`, observer `minmax`" in text
    assert "also loads on x86_64" in text and "Not measured yet" in text
    assert f"serve /models/{ckpt.name} --host 0.0.0.0" in text


def test_recipe_is_hashed_and_card_is_not(ckpt):
    files = manifest.read(ckpt)["files"]
    assert "recipe.yaml" in files and "README.md" not in files
    (ckpt / "bench-report.md").write_text("# vLLM CPU throughput\n\n| model | batch |\n")
    try:
        card.write(ckpt)  # what bench does after measuring
        text = (ckpt / "README.md").read_text()
        assert "### vLLM CPU throughput" in text and "Not measured yet" not in text
        assert run_cli("validate", ckpt).returncode == 0
    finally:
        (ckpt / "bench-report.md").unlink()
        card.write(ckpt)


def test_card_command_reproduces_the_checkpoint(ckpt, tmp_path):
    (command,) = [line for line in code_lines((ckpt / "README.md").read_text(), "How it was made")]
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "quantize"]
    done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    again = Path(done.stdout.strip())
    assert again == tmp_path / ckpt.name  # the seed's name, in the current directory
    first, second = read_tensors(ckpt), read_tensors(again)
    assert first.keys() == second.keys()
    assert all(first[k].equal(second[k]) for k in first)


def test_recipe_yaml_reproduces_the_checkpoint(ckpt, source, tmp_path):
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    recipe = yaml.safe_load((ckpt / "recipe.yaml").read_text())
    assert recipe["default_stage"]["default_modifiers"]["QuantizationModifier"]["ignore"][0] == "lm_head"
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
    oneshot(model=model, recipe=str(ckpt / "recipe.yaml"), output_dir=str(tmp_path / "again"))
    first, second = read_tensors(ckpt), read_tensors(tmp_path / "again")
    assert first.keys() == second.keys()
    assert all(first[k].equal(second[k]) for k in first)


def test_hub_source_gets_base_model(ckpt, tmp_path):
    copy = Path(shutil.copytree(ckpt, tmp_path / "hub"))
    info = manifest.read(copy)
    info["source"].update(model_id="deepseek-ai/DeepSeek-V2-Lite", local=False, revision="abc123")
    manifest.write(copy, info)
    text = card.write(copy).read_text()
    meta = front_matter(text)
    assert meta["base_model"] == "deepseek-ai/DeepSeek-V2-Lite" and meta["base_model_relation"] == "quantized"
    assert "[deepseek-ai/DeepSeek-V2-Lite](https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite)" in text
    (command,) = code_lines(text, "How it was made")
    assert command.startswith("python -m quantize deepseek-ai/DeepSeek-V2-Lite --method minmax --scheme groupwise")
    assert command.endswith("--revision abc123")


def test_moe_card_says_arm_only(quantized):
    moe = quantized("tiny_deepseek", method="minmax", scheme="channelwise")
    text = (moe / "README.md").read_text()
    assert "does not load on x86_64" in text and "per output channel" in text
    dense = quantized("tiny_deepseek", method="minmax", scheme="channelwise", skip_experts=True)
    text = (dense / "README.md").read_text()
    assert "also loads on x86_64" in text and "`--skip-experts`" in text
    assert "--skip-experts" in code_lines(text, "How it was made")[0]
    assert json.loads((dense / "config.json").read_text())["quantization_config"]
