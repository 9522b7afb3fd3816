"""Both checks of `smoke --reference` as one sentence a user can act on."""

from __future__ import annotations

from .. import records


def verdict(layers: records.LayerCheck, logprobs: records.LogprobCheck | None) -> records.Agreement:
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
