"""The reference model: the checkpoint's int4 weights dequantized, run in float32 by transformers, each
quantized Linear's input int8-fake-quantized per token as the scheme says."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .. import checkpoint


def dequantize(weight, scale):
    """int weight [out, in] and scale [out, in/group] (or [out, 1]) -> float32 [out, in]."""
    groups = scale.shape[1]
    per_group = weight.shape[1] // groups
    return weight.float() * scale.float().repeat_interleave(per_group, dim=1)


def fake_quant_per_token_int8(x):
    """Asymmetric int8 per-token quantize-dequantize (what vLLM's dynamic activations do)."""
    import torch

    lo = torch.clamp(x.amin(dim=-1, keepdim=True), max=0.0)
    hi = torch.clamp(x.amax(dim=-1, keepdim=True), min=0.0)
    scale = torch.clamp((hi - lo) / 255.0, min=1e-8)
    zero = torch.round(-128.0 - lo / scale)
    q = torch.clamp(torch.round(x / scale) + zero, -128, 127)
    return (q - zero) * scale


def load_reference(directory: Path, quantize_activations: bool = True):
    """The float32 reference model with `directory`'s dequantized weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    config = checkpoint.read_config(directory)
    config.pop("quantization_config", None)
    reader = checkpoint.Reader(directory)
    quantized = set(checkpoint.quantized_modules({n: None for n in reader.index}))
    tensors = {}
    for name in reader.index:
        module = name.rsplit(".", 1)[0]
        if module in quantized and name.endswith(".weight_scale"):
            continue
        tensor = reader.get(name)
        if module in quantized and name.endswith(".weight"):
            tensor = dequantize(tensor, reader.get(f"{module}.weight_scale"))
        tensors[name] = tensor.float().contiguous()
    with tempfile.TemporaryDirectory(prefix="w4a8-reference-") as tmp:
        config["dtype"] = "float32"
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        save_file(tensors, str(Path(tmp) / "model.safetensors"))
        model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    model.eval()
    if quantize_activations:
        for name, module in model.named_modules():
            if name in quantized and isinstance(module, torch.nn.Linear):
                module.register_forward_pre_hook(lambda _m, args: (fake_quant_per_token_int8(args[0]),))
    return model
