"""A PyTorch reference for a W4A8 checkpoint, independent of vLLM and of compressed-tensors' decompressor.

The reference model is the checkpoint's own int4 weights dequantized here (w = q * scale, the scale
repeated over each group), run in float32 by transformers. Each quantized Linear's input is also
fake-quantized the way the scheme says (int8, asymmetric, dynamic, one scale and zero point per token).

`smoke --reference` compares vLLM with it two ways (docs/smoke-check.md has the measured noise floors, fault
signals and where the tolerances come from):
- per layer (`layer_errors`, inside vLLM's process): each W4A8 Linear run by vLLM's own kernel on fixed random
  inputs against the dequantized weights on the same inputs. One layer at a time, so depth cannot hide a fault
  and bf16 noise cannot pile up: correct layers measure about 0.003, a single damaged layer 0.3 or more.
- end to end (`compare`, in a child process `python -m quantize.reference CHECKPOINT`, JSON on stdin and
  stdout, started after vLLM has released the model): vLLM's top-k next-token log-probs over each prompt and
  its generated tokens against the reference's, teacher-forced; the mean over positions of KL(vLLM ||
  reference), over vLLM's top-k plus one bucket for the rest (a lower bound of the full KL). This catches what
  the Linear check cannot see (MoE experts, attention, rotary embeddings). bf16-vs-float32 noise makes it
  blunter on deep models (0.033 nats/token on SmolLM2-135M), so it guards against gross faults only.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from . import checkpoint
from .errors import QuantizeError

DEFAULT_TOLERANCE = 0.1  # nats per token, mean KL(vLLM || reference); docs/smoke-check.md
LAYER_TOLERANCE = 0.05  # relative error of one Linear's output; docs/smoke-check.md
LAYER_TOKENS = 16  # random input rows per Linear
TOP_K = 20  # vLLM's default max_logprobs
W4A8_SCHEME = "CompressedTensorsW4A8Int"


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


def layer_errors(model, directory: Path, dtype, tolerance: float = LAYER_TOLERANCE, seed: int = 0) -> dict:
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


def bucketed_kl(q_top: dict[int, float], logp) -> float:
    """KL(Q || P) over Q's top-k tokens plus one bucket for all others; `logp` is P's full log-softmax."""
    kl, q_sum, p_sum = 0.0, 0.0, 0.0
    for token, lq in q_top.items():
        lp = float(logp[token])
        kl += math.exp(lq) * (lq - lp)
        q_sum += math.exp(lq)
        p_sum += math.exp(lp)
    q_rest, p_rest = max(1.0 - q_sum, 0.0), max(1.0 - p_sum, 1e-12)
    if q_rest > 1e-12:
        kl += q_rest * math.log(q_rest / p_rest)
    return max(kl, 0.0)


def compare(directory: Path, sequences: list[dict], tolerance: float = DEFAULT_TOLERANCE, model=None) -> dict:
    """Score `sequences` (from smoke.score: token ids and vLLM's top-k log-probs per position) with the
    reference of `directory` and report the mean KL(vLLM || reference) against `tolerance`."""
    import torch

    model = model or load_reference(directory)
    kls, top1, per_prompt, worst = [], 0, [], None
    for seq in sequences:
        ids, start = seq["token_ids"], seq["scored_from"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        seq_kls = []
        for offset, q_top in enumerate(seq["logprobs"]):
            pos = start + offset  # q_top is vLLM's distribution of token ids[pos], given ids[:pos]
            row = logp[pos - 1]
            q_top = {int(t): lq for t, lq in q_top.items()}
            kl = bucketed_kl(q_top, row)
            seq_kls.append(kl)
            vllm_top, ref_top = max(q_top, key=q_top.get), int(row.argmax())
            top1 += vllm_top == ref_top
            if worst is None or kl > worst["kl"]:
                worst = {
                    "prompt": seq["prompt"],
                    "position": pos,
                    "kl": kl,
                    "vllm_top_token": vllm_top,
                    "reference_top_token": ref_top,
                }
        kls += seq_kls
        per_prompt.append({"prompt": seq["prompt"], "mean_kl": round(sum(seq_kls) / max(len(seq_kls), 1), 5)})
    mean = sum(kls) / max(len(kls), 1)
    passed = mean <= tolerance
    worst = worst and {**worst, "kl": round(worst["kl"], 5)}
    return {
        "compared": f"vLLM's next-token log-probs (top {TOP_K} + the rest) with the PyTorch float32 reference of "
        f"{directory}, teacher-forced over each prompt and vLLM's generated tokens",
        "statistic": "mean KL(vLLM || reference), nats per token",
        "value": round(mean, 5),
        "tolerance": tolerance,
        "passed": passed,
        "verdict": (
            f"vLLM computes what the reference computes: mean KL {mean:.4f} <= {tolerance}"
            if passed
            else f"vLLM disagrees with the reference: mean KL {mean:.4f} > {tolerance} nats per token; the "
            "checkpoint or vLLM's reading of it is wrong"
        ),
        "positions": len(kls),
        "top1_matches": top1,
        "worst_position": worst,
        "per_prompt": per_prompt,
    }


def verdict(layers: dict, logprobs: dict | None) -> dict:
    """Both checks of `smoke --reference` (`logprobs` None: skipped), and one sentence a user can act on."""
    if layers["unmatched_layers"] or layers["worst_layer"] is None:
        missing = ", ".join(layers["unmatched_layers"][:3]) or "none found"
        what = f"vLLM's W4A8 Linears have no counterpart in the reference's tensors ({missing})"
    elif not layers["passed"]:
        what = (
            f"vLLM's {layers['worst_layer']} output differs from the checkpoint's by {100 * layers['value']:.1f}% "
            f"(tolerance {100 * layers['tolerance']:.0f}%)"
        )
    elif logprobs is not None and not logprobs["passed"]:
        what = logprobs["verdict"]
    else:
        end_to_end = (
            f"next-token mean KL {logprobs['value']:.4f} (tolerance {logprobs['tolerance']})"
            if logprobs is not None
            else "end-to-end comparison skipped (--layers-only)"
        )
        what = (
            f"vLLM computes what the checkpoint says: every W4A8 Linear within {100 * layers['value']:.1f}% "
            f"(tolerance {100 * layers['tolerance']:.0f}%), {end_to_end}"
        )
    passed = layers["passed"] and (logprobs is None or logprobs["passed"])
    return {"passed": passed, "verdict": what, "layers": layers, "logprobs": logprobs}


def compare_in_child(directory: Path, sequences: list[dict], tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """`compare` in a fresh Python process (see the module docstring)."""
    payload = json.dumps({"tolerance": tolerance, "sequences": sequences})
    result = subprocess.run(
        [sys.executable, "-m", "quantize.reference", str(directory)],
        input=payload,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        last = [ln for ln in result.stderr.splitlines() if ln.strip()][-1:] or [f"exit {result.returncode}"]
        raise QuantizeError(
            f"the PyTorch reference of {directory} failed: {last[0]}",
            "check that the reference is a W4A8 checkpoint of the same model (python -m quantize validate)",
            exit_code=1,
        )
    return json.loads(result.stdout)


def main() -> int:
    request = json.load(sys.stdin)
    print(json.dumps(compare(Path(sys.argv[1]), request["sequences"], request["tolerance"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
