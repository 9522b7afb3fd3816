"""`--recipe FILE.yaml`: any llmcompressor recipe, as long as what it writes is the W4A8 scheme vLLM serves on Arm.

The seed's options pick one modifier (QuantizationModifier, or GPTQModifier for gptq). A recipe file opens the
rest of llmcompressor: AWQ smoothing before quantizing, GPTQ's options, an observer's search grid, SmoothQuant,
offline rotations. It is checked before any weight is downloaded: its quantizing modifiers must agree on one
scheme, and that scheme must be one vLLM's CPU W4A8 path runs (`contract.scheme_problem`, the check `validate`
applies to the config written). Router gates and lm_head are added to every quantizing modifier's ignore list
(vLLM's MoE layers need the routers unquantized). The scheme (channelwise/groupwise, group size) comes from the
file, and the output is named after it: `awq-mse-g32.yaml` -> `<model>-w4a8dyn-awq-mse-g32`. recipes/ has
examples (docs/quality.md measures them).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .contract import SERVABLE, scheme_problem
from .errors import QuantizeError
from .recipe import DEFAULT_GROUPSIZE, ROTATION_MODIFIERS, Recipe

FILE_METHOD = "recipe"  # what the manifest records as the method of a recipe file


@dataclass(frozen=True)
class FileRecipe(Recipe):
    """`--recipe FILE`: the file's modifiers replace the seed's; scheme and group size are read from the file, the
    router gates (and with skip_experts the experts) are added to every quantizing modifier's ignore list."""

    method: str = FILE_METHOD
    file: str = ""
    file_text: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.method != FILE_METHOD or not self.file:
            raise ValueError(f"a recipe file's method is {FILE_METHOD!r} and it has a path")
        self._check_common()

    @property
    def calibrated(self) -> bool:
        """Always: AWQ, GPTQ, SmoothQuant and activation-aware observers need calibration text, and it costs the
        other modifiers only time."""
        return True

    @property
    def rotations(self) -> list[str]:
        return [type(m).__name__ for m in parse_modifiers(self.file_text) if type(m).__name__ in ROTATION_MODIFIERS]

    @property
    def option(self) -> str:
        return f"--recipe {self.file}"

    @property
    def observer(self) -> str:
        return str(file_schemes(self.file_text)[0]["weights"].get("observer"))

    def suffix(self) -> str:
        """The file's name without `.yaml`: awq-gptq-groupwise-g32.yaml -> ...-w4a8dyn-awq-gptq-groupwise-g32."""
        return os.path.splitext(os.path.basename(self.file))[0] + ("-dense-experts" if self.skip_experts else "")

    def as_dict(self) -> dict:
        return {**super().as_dict(), "recipe_file": self.file}

    def yaml(self, architecture: str = "", moe: bool = False) -> str:
        return self.file_text

    def modifiers(self, architecture: str = "", moe: bool = False) -> list:
        return [
            # rebuilt, not assigned to: a modifier resolves its quantization config (ignore list included) when built
            type(m)(**{**m.model_dump(exclude_unset=True), "ignore": list(dict.fromkeys([*m.ignore, *self.ignore]))})
            if _quantizes(m)
            else m
            for m in parse_modifiers(self.file_text)
        ]


def load(path: str | Path, skip_experts: bool = False, extra_ignore: tuple[str, ...] = ()) -> FileRecipe:
    """The Recipe for `--recipe path`, or a QuantizeError naming what makes the file unusable."""
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"--recipe {path}: no such file", "give the path of an llmcompressor recipe (YAML)")
    text = path.read_text()
    try:
        schemes = file_schemes(text)
    except Exception as exc:  # llmcompressor's parse errors come as ValueError, yaml.YAMLError, pydantic errors
        reason = _reason(exc)
        raise QuantizeError(
            f"--recipe {path} is not an llmcompressor recipe: {reason}",
            "write it as llmcompressor does (Recipe.yaml(); every checkpoint's recipe.yaml is an example)",
        ) from exc
    weights = servable_weights(path, schemes)
    return FileRecipe(
        scheme="channelwise" if weights["strategy"] == "channel" else "groupwise",
        groupsize=weights.get("group_size") or DEFAULT_GROUPSIZE,
        skip_experts=skip_experts,
        extra_ignore=tuple(extra_ignore),
        file=str(path),
        file_text=text,
    )


def servable_weights(path: Path, schemes: list[dict]) -> dict:
    """The weights' arguments of the one scheme the file quantizes with, if vLLM can serve it."""
    if not schemes:
        raise QuantizeError(
            f"--recipe {path} quantizes nothing (no quantizing modifier)", f"add a QuantizationModifier with {SERVABLE}"
        )
    for scheme in schemes:
        if problem := scheme_problem(scheme):
            raise QuantizeError(f"--recipe {path} is not servable by vLLM on CPU: {problem}", f"give it {SERVABLE}")
    distinct = {json.dumps(_format(s), sort_keys=True) for s in schemes}
    if len(distinct) > 1:
        raise QuantizeError(
            f"--recipe {path} quantizes with {len(distinct)} different schemes; a W4A8 checkpoint has one",
            "give every quantizing modifier the same config_groups",
        )
    return schemes[0]["weights"]


def _format(scheme: dict) -> dict:
    """What a scheme stores (observers and their settings only decide the values)."""
    weights = {k: v for k, v in scheme["weights"].items() if k not in ("observer", "observer_kwargs", "actorder")}
    return {**scheme, "weights": weights}


def _reason(exc: Exception) -> str:
    """One line from a parse failure: pydantic's first error with its field, else the message's first line."""
    if hasattr(exc, "errors") and hasattr(exc, "title"):  # pydantic.ValidationError
        first = exc.errors()[0]
        return f"{exc.title} {'.'.join(map(str, first['loc']))}: {first['msg']}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_modifiers(text: str) -> list:
    """An llmcompressor recipe (YAML text) -> its modifier objects, in order."""
    from llmcompressor.recipe import Recipe as LlmcompressorRecipe

    return list(LlmcompressorRecipe.create_instance(text).modifiers)


def _quantizes(modifier) -> bool:
    """Whether a modifier quantizes (QuantizationModifier, GPTQModifier, ...), rather than only transforming
    weights (AWQ smoothing, SmoothQuant, rotations)."""
    return hasattr(modifier, "resolve_quantization_config")


def file_schemes(text: str) -> list[dict]:
    """Every quantization config group a recipe's modifiers would apply, as config.json would store it."""
    return [
        group.model_dump(mode="json")
        for m in parse_modifiers(text)
        if _quantizes(m)
        for group in m.resolve_quantization_config().config_groups.values()
    ]
