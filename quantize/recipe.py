"""The W4A8-dynamic recipe: the seed's options, its output name, and the llmcompressor objects it builds.

Everything here is pure (no model, no I/O), so tests and the other modules share one definition of
"what the seed does".
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .contract import EXPERTS_PATTERN

SEED_METHODS = ("minmax", "mse")  # data-free observers, the seed's two choices
# Calibrated methods, not in the seed: they run calibration text through the loaded model.
# - gptq: llmcompressor's GPTQ picks each group's scale with the mse observer, then chooses the rounding column by
#   column to cancel the error it makes on calibration activations.
# - imatrix: llmcompressor's `imatrix_mse` observer, llama.cpp's importance-matrix idea: the scale search weighs
#   each weight's error by the mean squared activation of its input channel (E[x^2], from calibration text), so it
#   minimizes the layer's output error rather than the weights'. Plain rounding otherwise: cheap, one statistic
#   per input channel, so little text suffices. The grid below (squared error, 200 steps, shrink down to 40 % of
#   the max) beat the observer's defaults on SmolLM2-135M (docs/quality.md).
# - awq-gptq: llmcompressor's AWQ smoothing, then gptq. AWQ is a transform: for each norm (or Linear) that feeds
#   Linears, it divides its output channels by s and multiplies the matching input columns of the Linears it feeds
#   by s (the product is unchanged), s = E|x|^r (times a weight-magnitude term) with r picked by a grid search that
#   fake-quantizes the fed Linears with min-max under this scheme; so salient input channels get finer steps. Then
#   GPTQ rounds the smoothed weights. MoE models are never smoothed at a router's input (awq_mappings).
CALIBRATED_METHODS = ("gptq", "imatrix", "awq-gptq")
METHODS = SEED_METHODS + CALIBRATED_METHODS
GPTQ_METHODS = ("gptq", "awq-gptq")  # rounded by GPTQModifier (a Hessian per Linear, so calibration-hungry)
OBSERVERS = {"gptq": "mse", "imatrix": "imatrix_mse", "awq-gptq": "mse"}
IMATRIX_OBSERVER_KWARGS = {"norm": 2.0, "grid": 200, "maxshrink": 0.6, "patience": 40}
AWQ_N_GRID = 10  # grid points of AWQ's scale search, llmcompressor's default halved: each is a forward pass
# The norm that feeds a decoder layer's MLP: in an MoE layer it also feeds the router, so it is never smoothed there
MLP_INPUT_NORM = "post_attention_layernorm"
ROUTER_NAME = re.compile(r"(gate|router)\$?$")  # an AWQ balance pattern naming a router: `mlp.gate$`, not gate_proj
# Recipe-file modifiers that rotate weights with compressed-tensors transforms: these cannot run on offloaded
# weights (compressed-tensors 0.19 builds them on the weights' offload device, "disk"), so they load the model.
ROTATION_MODIFIERS = ("QuIPModifier", "SpinQuantModifier")
SCHEMES = ("channelwise", "groupwise")
DEFAULT_GROUPSIZE = 32
ACT_TAG = "a8dyn"

# Modules never quantized. `lm_head` is the seed's own ignore; the rest are MoE routers, which are
# tiny, precision-critical, and which vLLM's MoE layers expect unquantized. The patterns cover the
# router names used by DeepSeek-V2/V3 and Qwen-MoE (`mlp.gate`), Mixtral (`block_sparse_moe.gate`)
# and Qwen-MoE's shared-expert gate. transformers 5 makes DeepSeek's router a non-Linear module, but
# other MoE families keep it an nn.Linear, so the ignore is always spelled out.
ROUTER_GATE_PATTERNS = (
    r"re:.*mlp\.gate$",
    r"re:.*block_sparse_moe\.gate$",
    r"re:.*shared_expert_gate$",
)
DEFAULT_IGNORE = ("lm_head", *ROUTER_GATE_PATTERNS)


@dataclass(frozen=True)
class Recipe:
    """The seed's options (and the calibrated methods'), validated on construction. The other kind of recipe, an
    llmcompressor recipe file, is recipe_file.FileRecipe."""

    method: str = "mse"
    scheme: str = "channelwise"
    groupsize: int = DEFAULT_GROUPSIZE
    skip_experts: bool = False
    extra_ignore: tuple[str, ...] = field(default_factory=tuple)
    awq_grid: int = AWQ_N_GRID  # awq-gptq only: grid points of AWQ's scale search (--awq-grid)
    file = None  # not a field: a FileRecipe's path, None for the seed's options

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        self._check_common()

    def _check_common(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.groupsize <= 0:
            raise ValueError(f"groupsize must be positive, got {self.groupsize}")
        if self.awq_grid != AWQ_N_GRID and self.method != "awq-gptq":
            raise ValueError(f"--awq-grid applies to --method awq-gptq only, not {self.option}")
        if not 2 <= self.awq_grid <= 100:
            raise ValueError(f"--awq-grid must be between 2 and 100, got {self.awq_grid}")

    @property
    def calibrated(self) -> bool:
        """Whether calibration text runs through the model."""
        return self.method in CALIBRATED_METHODS

    @property
    def rotations(self) -> list[str]:
        """The modifiers that rotate weights (ROTATION_MODIFIERS), in order: only recipe files have any."""
        return []

    @property
    def option(self) -> str:
        """How the user chose the modifiers, for messages: `--method M` (`--recipe FILE` for a file's)."""
        return f"--method {self.method}"

    @property
    def observer(self) -> str:
        return OBSERVERS.get(self.method, self.method)

    @property
    def observer_kwargs(self) -> dict:
        return dict(IMATRIX_OBSERVER_KWARGS) if self.method == "imatrix" else {}

    @property
    def group_size(self) -> int | None:
        """The group size actually used: None for channelwise (the seed ignores --groupsize there)."""
        return self.groupsize if self.scheme == "groupwise" else None

    @property
    def ignore(self) -> list[str]:
        patterns = list(DEFAULT_IGNORE)
        if self.skip_experts:
            patterns.append(EXPERTS_PATTERN)
        patterns.extend(p for p in self.extra_ignore if p not in patterns)
        return patterns

    def suffix(self) -> str:
        """`<method>-<scheme>[-g<N>]`, exactly as the seed builds it (plus a tag when experts are skipped)."""
        suffix = f"{self.method}-{self.scheme}"
        if self.scheme == "groupwise":
            suffix += f"-g{self.groupsize}"
        return suffix + ("-dense-experts" if self.skip_experts else "")

    def output_name(self, model_id: str) -> str:
        """The seed's directory name: `<basename>-w4a8dyn-<method>-<scheme>[-g<N>]`."""
        base = os.path.basename(model_id.rstrip("/"))
        return f"{base}-w4{ACT_TAG}-{self.suffix()}"

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "scheme": self.scheme,
            "groupsize": self.group_size,
            "skip_experts": self.skip_experts,
            "ignore": self.ignore,
            "observer": self.observer,
            **({"awq_grid": self.awq_grid} if self.method == "awq-gptq" else {}),
        }

    # -- llmcompressor / compressed-tensors objects (imported lazily: they pull in torch) --

    def scheme_object(self):
        """The seed's QuantizationScheme: int4 symmetric static weights, int8 asymmetric dynamic per-token
        input activations, no output activations, targets `Linear`."""
        from compressed_tensors.quantization import QuantizationScheme
        from compressed_tensors.quantization.quant_args import (
            QuantizationArgs,
            QuantizationStrategy,
            QuantizationType,
        )

        strategy = QuantizationStrategy.CHANNEL if self.scheme == "channelwise" else QuantizationStrategy.GROUP
        weights = QuantizationArgs(
            num_bits=4,
            type=QuantizationType.INT,
            strategy=strategy,
            symmetric=True,
            dynamic=False,
            group_size=self.group_size,
            observer=self.observer,
            observer_kwargs=self.observer_kwargs,
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
            targets=["Linear"],
            weights=weights,
            input_activations=input_acts,
            output_activations=None,
        )

    def yaml(self, architecture: str = "", moe: bool = False) -> str:
        """The modifier as an llmcompressor recipe file: `oneshot(model=..., recipe="recipe.yaml")` applies it.
        A recipe file is kept as the user wrote it (llmcompressor cannot read back every recipe it writes: AWQ's
        defaults serialize as Python objects); `modifiers()` adds the router ignores when applying it."""
        from llmcompressor.recipe import Recipe as LlmcompressorRecipe

        return LlmcompressorRecipe.from_modifiers(self.modifiers(architecture, moe)).yaml()

    def modifiers(self, architecture: str = "", moe: bool = False) -> list:
        """What `oneshot` applies: the seed's one modifier (after AWQ for awq-gptq, whose mappings depend on the
        model's class name and whether it is MoE)."""
        if self.method == "awq-gptq":
            from llmcompressor.modifiers.transform.awq import AWQModifier

            return [AWQModifier(mappings=awq_mappings(architecture, moe), n_grid=self.awq_grid), self.modifier()]
        return [self.modifier()]

    def modifier(self):
        """The seed's QuantizationModifier (GPTQModifier for gptq: same scheme), router gates (and optionally
        experts) ignored."""
        if self.method in GPTQ_METHODS:
            from llmcompressor.modifiers.gptq import GPTQModifier as Modifier
        else:
            from llmcompressor.modifiers.quantization.quantization import QuantizationModifier as Modifier

        return Modifier(config_groups={"group_0": self.scheme_object()}, ignore=self.ignore)


def awq_mappings(architecture: str, moe: bool) -> list:
    """llmcompressor's AWQ mappings for a model class (its registry; the generic Llama-style list for classes it
    does not know), less, for MoE models, every mapping that smooths the MLP's input norm or balances a router:
    that norm feeds the router too, and routing must see the source's activations (llmcompressor's lists for
    DeepSeek-V2 smooth it without balancing the router; others fold the scale into the router's weight, exact only
    up to rounding). What remains on DeepSeek-V2: the attention input norm, the two MLA latent norms and every
    up_proj into its down_proj, as in recipes/deepseek-v2-awq-mse-g32.yaml."""
    from llmcompressor.modifiers.transform.awq import AWQ_MAPPING_REGISTRY, default_mappings

    mappings = AWQ_MAPPING_REGISTRY.get(architecture, default_mappings)
    if not moe:
        return list(mappings)
    return [
        m
        for m in mappings
        if MLP_INPUT_NORM not in m.smooth_layer and not any(ROUTER_NAME.search(b) for b in m.balance_layers)
    ]
