"""Group sizes are checked against every quantized layer from config.json alone, before any weight is read."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from quantize.errors import QuantizeError
from quantize.recipe import Recipe
from quantize.shapes import check_group_size, quantizable_in_features
from tests.helpers import error_line, run_main

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def deepseek_v2_lite_config_only(tmp_path) -> Path:
    """DeepSeek-V2-Lite's config.json (transcribed; see FIELD-NOTES section 3) with no weights at all."""
    model = tmp_path / "DeepSeek-V2-Lite"
    model.mkdir()
    shutil.copy(DATA / "deepseek-v2-lite-config.json", model / "config.json")
    return model


def test_deepseek_v2_lite_groupsize_128_fails_in_seconds_naming_the_layer(
    deepseek_v2_lite_config_only, tmp_path, capsys
):
    t0 = time.perf_counter()
    args = ["--scheme", "groupwise", "--groupsize", "128", "--output-root", tmp_path / "out"]
    result = run_main(capsys, deepseek_v2_lite_config_only, *args)
    elapsed = time.perf_counter() - t0
    assert result.returncode == 2, result.stderr
    assert error_line(result) == (
        "error: --groupsize 128 does not divide the in-features of model.layers.0.mlp.down_proj (10944); "
        "group sizes that divide every quantized layer: 16, 32, 64 "
        "(fix: use --groupsize 64 or --scheme channelwise)"
    )
    assert not (tmp_path / "out" / "DeepSeek-V2-Lite-w4a8dyn-mse-groupwise-g128").exists()
    print(f"group-size rejection took {elapsed:.1f} s (no weights exist, so none were read)")


@pytest.mark.parametrize("groupsize", [32, 64])
def test_deepseek_v2_lite_groupsizes_that_divide_pass(deepseek_v2_lite_config_only, groupsize):
    layers = list(quantizable_in_features(deepseek_v2_lite_config_only))
    check_group_size(Recipe(scheme="groupwise", groupsize=groupsize), layers)
    features = dict(layers)
    assert features["model.layers.0.mlp.down_proj"] == 10944
    assert features["model.layers.1.mlp.experts.*.down_proj"] == 1408
    assert features["model.layers.1.self_attn.kv_b_proj"] == 512


def test_tiny_deepseek_shapes_mirror_the_real_ones(tiny_deepseek):
    layers = list(quantizable_in_features(tiny_deepseek))
    for size in (32, 64):
        check_group_size(Recipe(scheme="groupwise", groupsize=size), layers)
    with pytest.raises(QuantizeError) as info:
        check_group_size(Recipe(scheme="groupwise", groupsize=128), layers)
    assert "model.layers.0.mlp.down_proj (320)" in info.value.message


def test_ignored_layers_do_not_count(tiny_deepseek):
    layers = list(quantizable_in_features(tiny_deepseek))
    # Ignoring every MLP leaves only attention projections (in-features 256, 512, 128): 128 divides them.
    check_group_size(Recipe(scheme="groupwise", groupsize=128, extra_ignore=(r"re:.*mlp\..*",)), layers)


def test_channelwise_ignores_groupsize(tiny_deepseek):
    check_group_size(Recipe(scheme="channelwise", groupsize=7), list(quantizable_in_features(tiny_deepseek)))
