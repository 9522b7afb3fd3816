"""Check a group size against a model's Linear shapes from config.json alone, before any weight is read.

The model is built on the `meta` device (no memory, no weights), so the check takes seconds even for
DeepSeek-V2-Lite and needs only config.json from the Hub.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import QuantizeError
from .recipe import ROUTER_GATE_PATTERNS, Recipe

CANDIDATE_GROUP_SIZES = (16, 32, 64, 128, 256)


@functools.lru_cache(maxsize=4)
def quantizable_in_features(model_dir: Path, trust_remote_code: bool = False) -> tuple[tuple[str, int], ...]:
    """Cached: the group-size check, the engine choice, the streaming engine and validate all ask for it, and
    building DeepSeek-V2-Lite's meta model takes seconds."""
    return tuple(_in_features(Path(model_dir), trust_remote_code))


@functools.lru_cache(maxsize=2)
def _meta_model(model_dir: Path, trust_remote_code: bool):
    """The model config.json describes, on the `meta` device: shapes without memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # a config that lies (a size of 0, a pad id past the vocabulary) fails anywhere inside
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise QuantizeError(
            f"transformers cannot build the model {model_dir}/config.json describes ({reason})",
            "restore the model's original config.json, or download or copy the model again",
        ) from exc


def parameter_shapes(model_dir: Path, trust_remote_code: bool = False) -> tuple[dict[str, list[int]], set[str]]:
    """Every parameter of the model config.json describes, with its shape, and the names that may be absent
    from a checkpoint (tied to another parameter, as `lm_head.weight` to the embeddings)."""
    model = _meta_model(Path(model_dir), trust_remote_code)
    expected = {name: list(p.shape) for name, p in model.named_parameters(remove_duplicate=False)}
    tied = getattr(model, "_tied_weights_keys", None) or {}  # transformers 5: {tied name: the name it ties to}
    return expected, set(tied) if getattr(model.config, "tie_word_embeddings", False) else set()


def _in_features(model_dir: Path, trust_remote_code: bool) -> Iterator[tuple[str, int]]:
    """(module name, in-features) of every Linear, of every non-Linear router gate, and of every fused 3-D expert weight
    (transformers 5 stores experts as [experts, out, in]; llmcompressor splits them into per-expert
    Linears named `<experts>.<i>.<proj>`, reported here as `<experts>.*.<proj>`)."""
    import torch

    model = _meta_model(model_dir, trust_remote_code)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            yield name, module.in_features
            continue
        for pname, param in module.named_parameters(recurse=False):
            if param.ndim == 3:
                yield f"{name}.*.{pname}", param.shape[-1]
            elif pname == "weight" and param.ndim == 2 and is_ignored(name, list(ROUTER_GATE_PATTERNS)):
                yield name, param.shape[-1]  # a router that is not an nn.Linear (DeepSeek): never quantized


def linear_modules(model_dir: Path, checkpoint_modules: set[str], trust_remote_code: bool = False) -> list[str]:
    """Every Linear the recipe's `targets: Linear` can reach, by checkpoint module name, in model order:
    plain Linears as named, fused 3-D experts expanded to the per-expert names the checkpoint holds."""
    names: list[str] = []
    for name, _ in quantizable_in_features(model_dir, trust_remote_code):
        if ".*." in name:
            prefix = re.escape(name.split(".*.")[0])
            pattern = re.compile(prefix + r"\.(\d+)\.([^.]+)")
            experts = [(m, pattern.fullmatch(m)) for m in checkpoint_modules]
            names.extend(m for m, _ in sorted(((m, k) for m, k in experts if k), key=lambda mk: _expert_key(mk[1])))
        else:
            names.append(name)
    return list(dict.fromkeys(names))


# llmcompressor's per-expert Linear order (LinearExperts2D: up_proj, gate_proj, down_proj), so that lists built
# here (e.g. the config's `ignore`) come out in the order the load path writes them.
_PROJ_ORDER = {"up_proj": 0, "gate_proj": 1, "down_proj": 2}


def _expert_key(match: re.Match) -> tuple:
    return int(match.group(1)), _PROJ_ORDER.get(match.group(2), len(_PROJ_ORDER)), match.group(2)


def is_ignored(name: str, ignore: list[str]) -> bool:
    from compressed_tensors.utils.match import match_name

    concrete = name.replace(".*.", ".0.")  # a fused expert is ignored if its first expert would be
    return any(match_name(concrete, pattern) for pattern in ignore)


def check_group_size(recipe: Recipe, layers: list[tuple[str, int]]) -> None:
    """Raise QuantizeError naming the first quantized layer whose in-features the group size does not divide."""
    size = recipe.group_size
    if size is None:
        return
    targeted = [(n, f) for n, f in layers if not is_ignored(n, recipe.ignore)]
    bad = [(n, f) for n, f in targeted if f % size]
    if not bad:
        return
    name, features = bad[0]
    working = [g for g in CANDIDATE_GROUP_SIZES if all(f % g == 0 for _, f in targeted)]
    others = f" (and {len(bad) - 1} more layers)" if len(bad) > 1 else ""
    sizes = ", ".join(map(str, working)) if working else "none"
    raise QuantizeError(
        f"--groupsize {size} does not divide the in-features of {name} ({features}){others}; "
        f"group sizes that divide every quantized layer: {sizes}",
        f"use --groupsize {working[-1]} or --scheme channelwise" if working else "use --scheme channelwise",
    )
