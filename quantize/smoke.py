"""`python -m quantize smoke DIR`: load a checkpoint in vLLM on CPU, prove the W4A8 path was chosen, generate.

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) so the loaded model can be inspected
directly: every Linear vLLM built for a quantized module must use the CompressedTensorsW4A8Int scheme (and
report its kernel: Dynamic4bitLinearKernel, KleidiAI on Arm), and every MoE layer reports its method.
"""

from __future__ import annotations

import platform
import time
from functools import partial
from pathlib import Path

from . import records
from .contract import W4A8_SCHEME, X86_NOTE, check_runnable
from .errors import QuantizeError
from .host import cpu_model, is_arm
from .vllm_engine import close, load, resolve_dtype

DEFAULT_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Arm Neoverse cores are",
    "The red fox",
]


def describe_layers(model) -> dict:
    """Runs inside vLLM's worker: which scheme/kernel (Linear) or method (MoE) each layer ended up with."""
    linear, moe = {}, {}
    for name, module in model.named_modules():
        method_cls = type(getattr(module, "quant_method", None))
        method = method_cls.__name__
        if any(cls.__name__ == "FusedMoEMethodBase" for cls in method_cls.__mro__):
            moe[name] = method
        elif method.startswith("Unquantized") or method.endswith("KVCacheMethod") or method == "NoneType":
            continue
        elif (scheme := getattr(module, "scheme", None)) is not None:
            kernel = getattr(scheme, "kernel", None)
            linear[name] = [type(scheme).__name__, type(kernel).__name__ if kernel is not None else None]
        else:
            linear[name] = [method, None]
    return {"linear": linear, "moe": moe}


def summarize(layers: dict) -> records.LayerSummary:
    linear = layers["linear"]
    w4a8 = {n: v for n, v in linear.items() if v[0] == W4A8_SCHEME}
    return {
        "w4a8_linear_layers": len(w4a8),
        "other_quantized_linear_layers": {n: v[0] for n, v in linear.items() if v[0] != W4A8_SCHEME},
        "linear_kernels": sorted({v[1] for v in w4a8.values() if v[1]}),
        "moe_methods": sorted(set(layers["moe"].values())),
        "moe_layers": len(layers["moe"]),
    }


def generate(llm, prompts: list[str], max_tokens: int) -> tuple[list[dict], float]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    t0 = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - t0
    results = [
        {
            "prompt": prompt,
            "prompt_token_ids": list(out.prompt_token_ids),
            "token_ids": list(out.outputs[0].token_ids),
            "text": out.outputs[0].text,
        }
        for prompt, out in zip(prompts, outputs, strict=True)
    ]
    return results, seconds


def score(llm, results: list[dict], top_k: int) -> list[dict]:
    """vLLM's top-k next-token log-probs at every position of each prompt + generated sequence."""
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=top_k)
    sequences = [r["prompt_token_ids"] + r["token_ids"] for r in results]
    outputs = llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in sequences], params, use_tqdm=False)
    return [
        {
            "prompt": r["prompt"],
            "token_ids": ids,
            "scored_from": 1,
            "logprobs": [
                {t: lp.logprob for t, lp in position.items() if lp.rank is not None and lp.rank <= top_k}
                for position in out.prompt_logprobs[1:]
            ],
        }
        for r, ids, out in zip(results, sequences, outputs, strict=True)
    ]


def check_w4a8(summary: dict, directory: Path) -> None:
    if summary["w4a8_linear_layers"] == 0:
        raise QuantizeError(
            f"vLLM loaded {directory} but no Linear layer uses {W4A8_SCHEME}",
            "check config.json's quantization_config (python -m quantize validate DIR)",
            exit_code=1,
        )
    if summary["other_quantized_linear_layers"]:
        name, scheme = next(iter(summary["other_quantized_linear_layers"].items()))
        raise QuantizeError(
            f"vLLM chose {scheme} for {name} instead of {W4A8_SCHEME}",
            "re-quantize with this tool's recipe",
            exit_code=1,
        )


def run(
    directory: str | Path,
    prompts: list[str] | None = None,
    max_tokens: int = 16,
    reference: str | None = None,
    eager: bool = False,
    layers_only: bool = False,
    dtype: str = "auto",
) -> records.SmokeReport:
    directory = Path(directory)
    check_runnable(directory)
    vllm_dtype = resolve_dtype(directory, dtype)
    prompts = prompts or DEFAULT_PROMPTS
    llm, load_seconds = load(directory, eager=eager, dtype=vllm_dtype["dtype"])
    summary = summarize(llm.apply_model(describe_layers)[0])
    check_w4a8(summary, directory)
    results, gen_seconds = generate(llm, prompts, max_tokens)
    if reference is not None:
        from . import reference as ref

        ref_dir = Path(reference) if reference else directory
        dtype = llm.llm_engine.model_config.dtype
        layer_check = llm.apply_model(partial(ref.layer_errors, directory=ref_dir, dtype=dtype))[0]
        scored = None if layers_only else score(llm, results, ref.TOP_K)
        close(llm)  # the end-to-end reference runs in a child process, with vLLM's memory released
    generated = sum(len(r["token_ids"]) for r in results)
    report = {
        "model": str(directory),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "dtype": vllm_dtype,
        "load_seconds": round(load_seconds, 2),
        "generate_seconds": round(gen_seconds, 3),
        "generated_tokens": generated,
        "tokens_per_second": round(generated / gen_seconds, 2),
        "layers": summary,
        "outputs": results,  # with token ids, so that agreement can also be checked later, elsewhere
    }
    if not is_arm():
        report["note"] = X86_NOTE
    if reference is not None:
        logprobs = None if layers_only else ref.compare_in_child(ref_dir, scored)
        report["agreement"] = ref.verdict(layer_check, logprobs)
    return report
