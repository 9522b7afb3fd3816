"""The per-layer check, run inside vLLM's worker: each W4A8 Linear by vLLM's kernel against the dequantized
weights."""

from __future__ import annotations

from pathlib import Path

from .. import checkpoint, records
from ..contract import W4A8_SCHEME
from .model import dequantize, fake_quant_per_token_int8

LAYER_TOLERANCE = 0.05  # relative error of one Linear's output; docs/smoke-check.md
LAYER_TOKENS = 16  # random input rows per Linear


def layer_errors(
    model, directory: Path, dtype, tolerance: float = LAYER_TOLERANCE, seed: int = 0
) -> records.LayerCheck:
    """Runs inside vLLM's worker: every W4A8 Linear of vLLM's loaded `model`, run by vLLM's own kernel on fixed
    random inputs, against the checkpoint's dequantized weights applied in float32 to the same inputs,
    int8-fake-quantized per token. vLLM's fused Linears (qkv_proj, gate_up_proj) are compared with their
    parts concatenated, as the model's packed_modules_mapping lists them.

    One Linear at a time, so depth cannot hide a fault and noise cannot pile up: the error of a correct layer
    is activation rounding (bf16, int8), a few percent at most; a wrong scale or misread int4 values is tens
    of percent. `dtype` is the dtype vLLM runs activations in."""
    import torch

    reader = checkpoint.Reader(directory)
    packed = getattr(model, "packed_modules_mapping", {}) or {}
    generator = torch.Generator().manual_seed(seed)
    errors, unmatched = {}, []
    for name, module in model.named_modules():
        if type(getattr(module, "scheme", None)).__name__ != W4A8_SCHEME:
            continue
        prefix, _, leaf = name.rpartition(".")
        parts = [f"{prefix}.{part}" for part in packed.get(leaf, [leaf])]
        if not all(f"{part}.weight_scale" in reader.index for part in parts):
            unmatched.append(name)
            continue
        weight = torch.cat([dequantize(reader.get(f"{p}.weight"), reader.get(f"{p}.weight_scale")) for p in parts])
        x = torch.randn(LAYER_TOKENS, weight.shape[1], generator=generator, dtype=torch.float32).to(dtype)
        with torch.no_grad():
            got = module.quant_method.apply(module, x).to(torch.float32)
            want = fake_quant_per_token_int8(x.to(torch.float32)) @ weight.T
        errors[name] = float((got - want).norm() / want.norm())
    worst = max(errors, key=errors.get, default=None)
    passed = worst is not None and errors[worst] <= tolerance and not unmatched
    return {
        "compared": f"each W4A8 Linear's output from vLLM's kernel on {LAYER_TOKENS} random input rows with the "
        f"dequantized weights of {directory} in float32 (inputs int8-fake-quantized per token)",
        "statistic": "relative error ||vLLM - reference|| / ||reference|| of one layer's output",
        "layers": len(errors),
        "worst_layer": worst,
        "value": round(errors[worst], 5) if worst else None,
        "tolerance": tolerance,
        "passed": passed,
        "unmatched_layers": unmatched,
        "median": round(sorted(errors.values())[len(errors) // 2], 5) if errors else None,
    }
