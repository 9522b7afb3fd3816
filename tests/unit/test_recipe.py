"""The seed's interface and recipe, kept exactly: argument parsing, output names, the quantization scheme."""

from __future__ import annotations

import pytest
from compressed_tensors.quantization import QuantizationScheme
from compressed_tensors.quantization.quant_args import QuantizationArgs, QuantizationStrategy, QuantizationType

from quantize.card import quantize_command
from quantize.cli import quantize_parser
from quantize.recipe import AWQ_N_GRID, EXPERTS_PATTERN, IMATRIX_OBSERVER_KWARGS, OBSERVERS, Recipe, awq_mappings


def seed_scheme(method: str, scheme: str, groupsize: int) -> QuantizationScheme:
    """The seed script's scheme, transcribed from ../shared/seed/quantize-an-llm-to-int4.md."""
    strategy = QuantizationStrategy.CHANNEL if scheme == "channelwise" else QuantizationStrategy.GROUP
    weights_args = QuantizationArgs(
        num_bits=4,
        type=QuantizationType.INT,
        strategy=strategy,
        symmetric=True,
        dynamic=False,
        group_size=groupsize if scheme == "groupwise" else None,
        observer=method,
    )
    input_acts = QuantizationArgs(
        num_bits=8,
        type=QuantizationType.INT,
        strategy=QuantizationStrategy.TOKEN,
        symmetric=False,
        dynamic=True,
        observer=None,
    )
    return QuantizationScheme(
        targets=["Linear"], weights=weights_args, input_activations=input_acts, output_activations=None
    )


@pytest.mark.parametrize("method", ["minmax", "mse"])
@pytest.mark.parametrize("scheme,groupsize", [("channelwise", 32), ("groupwise", 32), ("groupwise", 64)])
def test_scheme_is_the_seeds(method, scheme, groupsize):
    ours = Recipe(method=method, scheme=scheme, groupsize=groupsize).scheme_object()
    assert ours.model_dump() == seed_scheme(method, scheme, groupsize).model_dump()


@pytest.mark.parametrize(
    "model_id,argv,name",
    [
        (
            "deepseek-ai/DeepSeek-V2-Lite",
            ["--scheme", "channelwise", "--method", "mse"],
            "DeepSeek-V2-Lite-w4a8dyn-mse-channelwise",
        ),
        (
            "deepseek-ai/DeepSeek-V2-Lite",
            ["--scheme", "groupwise", "--method", "minmax"],
            "DeepSeek-V2-Lite-w4a8dyn-minmax-groupwise-g32",
        ),
        ("/models/llama/", ["--scheme", "groupwise", "--groupsize", "64"], "llama-w4a8dyn-mse-groupwise-g64"),
        ("./tiny", ["--scheme", "channelwise", "--groupsize", "64"], "tiny-w4a8dyn-mse-channelwise"),
    ],
)
def test_seed_arguments_and_output_name(model_id, argv, name):
    args = quantize_parser().parse_args([model_id, *argv])
    recipe = Recipe(method=args.method, scheme=args.scheme, groupsize=args.groupsize)
    assert recipe.output_name(args.model_id) == name


def test_seed_defaults_and_choices():
    args = quantize_parser().parse_args(["m", "--scheme", "channelwise"])
    assert (args.method, args.groupsize) == ("mse", 32)
    with pytest.raises(SystemExit):
        quantize_parser().parse_args(["m"])  # --scheme is required, as in the seed
    with pytest.raises(SystemExit):
        quantize_parser().parse_args(["m", "--scheme", "blockwise"])
    with pytest.raises(SystemExit):
        quantize_parser().parse_args(["m", "--scheme", "channelwise", "--method", "awq"])


def test_gptq_uses_the_same_scheme_and_the_seeds_name():
    """gptq changes how the int4 values are chosen, not the format: same scheme but the observer, GPTQModifier."""
    gptq = Recipe(method="gptq", scheme="groupwise", groupsize=32)
    assert gptq.output_name("org/SmolLM2-135M") == "SmolLM2-135M-w4a8dyn-gptq-groupwise-g32"
    ours = gptq.scheme_object().model_dump()
    assert ours == seed_scheme(OBSERVERS["gptq"], "groupwise", 32).model_dump()
    modifier = gptq.modifier()
    assert type(modifier).__name__ == "GPTQModifier" and modifier.ignore == gptq.ignore
    assert type(Recipe(method="mse", scheme="groupwise").modifier()).__name__ == "QuantizationModifier"


def test_imatrix_is_the_seed_scheme_with_an_activation_weighted_observer():
    """imatrix changes only the weight observer (and its grid): same format, so vLLM serves it like the seed's."""
    imatrix = Recipe(method="imatrix", scheme="groupwise", groupsize=32)
    assert (
        imatrix.calibrated and imatrix.output_name("org/SmolLM2-135M") == "SmolLM2-135M-w4a8dyn-imatrix-groupwise-g32"
    )
    ours = imatrix.scheme_object().model_dump()
    seed = seed_scheme("imatrix_mse", "groupwise", 32).model_dump()
    assert ours["weights"]["observer_kwargs"] == IMATRIX_OBSERVER_KWARGS
    ours["weights"]["observer_kwargs"] = {}
    assert ours == seed
    modifier = imatrix.modifier()
    assert type(modifier).__name__ == "QuantizationModifier" and modifier.ignore == imatrix.ignore


def test_awq_gptq_smooths_then_runs_gptq_under_the_seeds_scheme_and_name():
    recipe = Recipe(method="awq-gptq", scheme="groupwise", groupsize=32)
    assert recipe.calibrated and recipe.output_name("org/SmolLM2-135M") == "SmolLM2-135M-w4a8dyn-awq-gptq-groupwise-g32"
    awq, gptq = recipe.modifiers("LlamaForCausalLM", moe=False)
    assert (type(awq).__name__, type(gptq).__name__) == ("AWQModifier", "GPTQModifier")
    assert awq.n_grid == AWQ_N_GRID and gptq.ignore == recipe.ignore
    assert recipe.scheme_object().model_dump() == seed_scheme("mse", "groupwise", 32).model_dump()
    assert "AWQModifier" in recipe.yaml("LlamaForCausalLM") and "GPTQModifier" in recipe.yaml("LlamaForCausalLM")


def test_awq_grid_reaches_awq_and_the_cards_command_and_only_awq_gptq_takes_it():
    recipe = Recipe(method="awq-gptq", scheme="groupwise", groupsize=32, awq_grid=20)
    assert recipe.modifiers("LlamaForCausalLM", moe=False)[0].n_grid == 20
    assert recipe.output_name("m") == Recipe(method="awq-gptq", scheme="groupwise", groupsize=32).output_name("m")
    info = {"arguments": recipe.as_dict(), "source": {"model_id": "m", "local": True}}
    argv = quantize_command(info)
    assert quantize_parser().parse_args(argv[3:]).awq_grid == 20
    assert "--awq-grid" not in quantize_command({**info, "arguments": Recipe(method="awq-gptq").as_dict()})
    with pytest.raises(ValueError, match="--awq-grid applies to --method awq-gptq only"):
        Recipe(method="gptq", awq_grid=20)
    with pytest.raises(ValueError, match="between 2 and 100"):
        Recipe(method="awq-gptq", awq_grid=0)


@pytest.mark.parametrize("architecture", ["DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "Qwen3MoeForCausalLM",
                                          "MixtralForCausalLM"])  # fmt: skip
def test_awq_mappings_of_moe_models_leave_the_router_input_alone(architecture):
    """llmcompressor smooths the MLP's input norm of MoE models (for DeepSeek-V2 without even folding the scale
    into the router): in an MoE layer that norm feeds the router, so those mappings are dropped, and no router is
    ever a balance layer. The attention's and the experts' own mappings stay."""
    mappings = awq_mappings(architecture, moe=True)
    assert all("post_attention_layernorm" not in m.smooth_layer for m in mappings)
    balanced = [b for m in mappings for b in m.balance_layers]
    assert not [b for b in balanced if b.endswith(("gate$", "router$"))]
    assert "re:.*up_proj$" in [m.smooth_layer for m in mappings]  # each expert's up_proj into its down_proj
    assert any("input_layernorm" in m.smooth_layer for m in mappings)
    dense = awq_mappings("LlamaForCausalLM", moe=False)
    assert any("post_attention_layernorm" in m.smooth_layer for m in dense)  # dense models keep it


def test_ignore_list():
    recipe = Recipe(extra_ignore=("re:.*q_proj$", "lm_head"))
    assert recipe.ignore[0] == "lm_head"
    assert r"re:.*mlp\.gate$" in recipe.ignore
    assert recipe.ignore.count("lm_head") == 1
    assert recipe.ignore[-1] == "re:.*q_proj$"
    assert EXPERTS_PATTERN not in recipe.ignore
    skipping = Recipe(skip_experts=True)
    assert EXPERTS_PATTERN in skipping.ignore
    assert skipping.output_name("m").endswith("-dense-experts")


def test_bad_recipe_values():
    with pytest.raises(ValueError, match="groupsize must be positive"):
        Recipe(scheme="groupwise", groupsize=0)
