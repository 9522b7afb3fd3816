"""Where a W4A8 checkpoint's weights lose accuracy: per-layer output error, and perplexity by layer subset.

Diagnostics behind docs/quality.md, on the PyTorch reference path (float32, transformers, the checkpoint's int4
weights dequantized by `quantize.reference`); activations are left unquantized to isolate the weights.

    python -m benchmarks.weight_error layers SOURCE CKPT...
        sum over quantized Linears of ||X(Wq-W)^T||^2 / ||XW^T||^2, X = SOURCE's inputs to the layer (eval and
        calibration text)
    python -m benchmarks.weight_error subsets SOURCE CKPT
        perplexity (built-in eval text) with only some layers quantized
    python -m benchmarks.weight_error perplexity SOURCE CKPT...
        perplexity (built-in eval text, windows of 512) of SOURCE in float32 and of each checkpoint as vLLM
        computes it: int4 weights dequantized, every quantized Linear's input fake-quantized to int8 per token
        (docs/quality.md's reference-path table)
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from quantize import checkpoint, corpus, evaluate, reference

TEXTS = {"eval": "builtin:eval", "calibration": "builtin:calibration"}


def subsets(layers: int) -> dict:
    """Label -> which quantized modules (by name) keep their int4 weights; the rest get the source's back."""
    edges = tuple(f"model.layers.{i}." for i in (0, 1, layers - 2, layers - 1))
    return {
        "all": lambda n: True,
        "attention only": lambda n: ".self_attn." in n,
        "mlp only": lambda n: ".mlp." in n,
        "all but down_proj": lambda n: "down_proj" not in n,
        "all but layer 0": lambda n: not n.startswith("model.layers.0."),
        "all but the first and last two layers": lambda n: not n.startswith(edges),
    }


def dequantized(directory: str) -> dict:
    """Module name -> float64 dequantized weight, for every module the checkpoint quantized."""
    reader = checkpoint.Reader(directory)
    return {
        n: reference.dequantize(reader.get(f"{n}.weight"), reader.get(f"{n}.weight_scale")).double()
        for n in checkpoint.quantized_modules(reader.index)
    }


def layer_errors(model, tokenizer, checkpoints: list[str], windows: int = 4) -> None:
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    gram = {text: _input_grams(model, linears, tokenizer, spec, windows) for text, spec in TEXTS.items()}
    for directory in checkpoints:
        weights = dequantized(directory)
        for text, sums in gram.items():
            by_kind = defaultdict(float)
            for n, quantized in weights.items():
                w = linears[n].weight.double()
                d = quantized - w
                by_kind[n.rsplit(".", 1)[-1]] += (
                    torch.trace(d @ sums[n] @ d.T) / torch.trace(w @ sums[n] @ w.T)
                ).item()
            kinds = ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items())
            print(f"{directory} on {text}: {sum(by_kind.values()):.2f} ({kinds})")


def _input_grams(model, linears: dict, tokenizer, spec: str, windows: int) -> dict:
    """layer -> X^T X of its inputs over the first `windows` windows of `spec`."""
    sums = defaultdict(float)

    def hook(name):
        def accumulate(_module, args):
            x = args[0].reshape(-1, args[0].shape[-1]).double()
            sums[name] = sums[name] + x.T @ x

        return accumulate

    hooks = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    with torch.no_grad():
        for w in corpus.token_windows(tokenizer, corpus.load_texts(spec), 512, windows):
            model(input_ids=torch.tensor([w]))
    for h in hooks:
        h.remove()
    return dict(sums)


def subset_perplexities(model, tokenizer, directory: str) -> None:
    weights = dequantized(directory)
    modules = {n: model.get_submodule(n) for n in weights}
    original = {n: m.weight.detach().clone() for n, m in modules.items()}
    windows = corpus.token_windows(tokenizer, corpus.load_texts(TEXTS["eval"]), 512)
    print(f"{'bf16':40s} {perplexity(model, windows):.2f}")
    for label, chosen in subsets(model.config.num_hidden_layers).items():
        for n, m in modules.items():
            m.weight.data.copy_(weights[n] if chosen(n) else original[n])
        print(f"{label:40s} {perplexity(model, windows):.2f}", flush=True)


def perplexity(model, windows) -> float:
    """`evaluate.perplexity` (what `quantize eval` reports) of the log-probs `model` gives each next token."""
    actual = []
    with torch.no_grad():
        for w in windows:
            ids = torch.tensor([w])
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            actual += logprobs[:-1].gather(1, ids[0, 1:, None]).squeeze(1).tolist()
    return evaluate.perplexity(actual)


def reference_perplexities(model, tokenizer, checkpoints: list[str]) -> None:
    windows = corpus.token_windows(tokenizer, corpus.load_texts(TEXTS["eval"]), 512)
    tokens = sum(len(w) - 1 for w in windows)
    print(f"{'source (float32)':60s} {perplexity(model, windows):.2f}  ({tokens} tokens)", flush=True)
    for directory in checkpoints:
        print(f"{directory:60s} {perplexity(reference.load_reference(directory), windows):.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["layers", "subsets", "perplexity"])
    parser.add_argument("source", help="the unquantized checkpoint")
    parser.add_argument("checkpoints", nargs="+", help="W4A8 checkpoints written by python -m quantize")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.source)
    model = AutoModelForCausalLM.from_pretrained(args.source, dtype=torch.float32).eval()
    if args.mode == "layers":
        layer_errors(model, tokenizer, args.checkpoints)
    elif args.mode == "perplexity":
        reference_perplexities(model, tokenizer, args.checkpoints)
    else:
        for directory in args.checkpoints:
            subset_perplexities(model, tokenizer, directory)


if __name__ == "__main__":
    main()
