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

from .child import compare_in_child
from .layers import LAYER_TOKENS, LAYER_TOLERANCE, layer_errors
from .logprobs import DEFAULT_TOLERANCE, TOP_K, compare, kl_topk_vs_full
from .model import dequantize, fake_quant_per_token_int8, load_reference
from .verdict import verdict

__all__ = [
    "DEFAULT_TOLERANCE",
    "LAYER_TOKENS",
    "LAYER_TOLERANCE",
    "TOP_K",
    "compare",
    "compare_in_child",
    "dequantize",
    "fake_quant_per_token_int8",
    "kl_topk_vs_full",
    "layer_errors",
    "load_reference",
    "verdict",
]
