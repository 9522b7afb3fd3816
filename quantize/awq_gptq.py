"""awq-gptq's two modifiers: llmcompressor's AWQ and GPTQ, with GPTQ's Hessians made to match AWQ's smoothing.

In one `oneshot`, llmcompressor's sequential pipeline runs each decoder layer's calibration forward pass once, with
both modifiers' hooks on: AWQ caches the inputs it needs, and GPTQ accumulates each Linear's Hessian H = E[x x^T]
of the inputs x it sees. At the layer's end AWQ smooths first: the balance Linears' input columns are multiplied by
s and their inputs become x / s. GPTQ then rounds the smoothed weights W diag(s), but with the H of the unsmoothed
inputs, whereas the error it should minimise, |(W diag(s) - Q) (x / s)|^2, weighs it with
H' = diag(1/s) H diag(1/s). Upstream GPTQModifier cannot know the scales; here AWQ hands them over on the module
(`AWQ_SCALES`) and GPTQ rescales its Hessian before rounding. docs/quality.md has what this changes.
"""

from __future__ import annotations

import torch
from llmcompressor.modifiers.gptq import GPTQModifier
from llmcompressor.modifiers.transform.awq import AWQModifier

AWQ_SCALES = "_vllm_arm_int4_awq_scales"  # a plain attribute on a balance Linear: not a parameter, never saved


class ScaleRecordingAWQModifier(AWQModifier):
    """AWQModifier that leaves each balance Linear the scales its input columns were multiplied by."""

    def _compute_best_scale(self, mapping, fp16_outputs, orig_layer_weights) -> torch.Tensor:
        scales = super()._compute_best_scale(mapping, fp16_outputs, orig_layer_weights)
        for layer in mapping.balance_layers:
            previous = layer.__dict__.get(AWQ_SCALES)
            recorded = scales.detach().float().cpu()
            layer.__dict__[AWQ_SCALES] = recorded if previous is None else previous * recorded
        return scales


class SmoothedGPTQModifier(GPTQModifier):
    """GPTQModifier whose Hessians are rescaled, before rounding, to the inputs AWQ's smoothing left."""

    def compress_modules(self):
        rescale_hessians(self._hessians)
        return super().compress_modules()


def rescale_hessians(hessians: dict[torch.nn.Module, torch.Tensor]) -> None:
    """H -> diag(1/s) H diag(1/s), in place, for each Linear AWQ left scales s on (which it takes back)."""
    for module, hessian in hessians.items():
        scales = module.__dict__.pop(AWQ_SCALES, None)
        if scales is not None:
            inverse = scales.reciprocal().to(hessian.device, hessian.dtype)
            hessian.mul_(inverse.view(-1, 1)).mul_(inverse.view(1, -1))
