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
from pathlib import Path

from . import recipe as recipe_module
from .contract import SERVABLE, scheme_problem
from .errors import QuantizeError
from .recipe import DEFAULT_GROUPSIZE, FILE_METHOD, Recipe


def load(path: str | Path, skip_experts: bool = False, extra_ignore: tuple[str, ...] = ()) -> Recipe:
    """The Recipe for `--recipe path`, or a QuantizeError naming what makes the file unusable."""
    path = Path(path)
    if not path.is_file():
        raise QuantizeError(f"--recipe {path}: no such file", "give the path of an llmcompressor recipe (YAML)")
    text = path.read_text()
    try:
        schemes = recipe_module.file_schemes(text)
    except Exception as exc:  # llmcompressor's parse errors come as ValueError, yaml.YAMLError, pydantic errors
        reason = _reason(exc)
        raise QuantizeError(
            f"--recipe {path} is not an llmcompressor recipe: {reason}",
            "write it as llmcompressor does (Recipe.yaml(); every checkpoint's recipe.yaml is an example)",
        ) from exc
    weights = servable_weights(path, schemes)
    return Recipe(
        method=FILE_METHOD,
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
