"""`python -m quantize eval DIR --source MODEL`: the quantized checkpoint scored against its source by vLLM."""

from __future__ import annotations

import argparse

from ..errors import QuantizeError
from ..records import EvalReport
from .common import checkpoint_parser, engine_options, same_names, second_model_option

NAME = "eval"
SUMMARY = "perplexity, top-1 and KL against the source model, both scored by vLLM"
HELP = (
    "Perplexity, top-1 agreement and KL divergence of a quantized checkpoint against its source, "
    "both scored by vLLM; JSON on stdout, eval-report.md and a manifest entry in DIR."
)


def build() -> argparse.ArgumentParser:
    from ..evaluate import DEFAULT_CORPUS, DEFAULT_SEQ_LEN
    from ..vllm_engine import MAX_LOGPROBS

    p = checkpoint_parser(NAME, HELP, engine=True)
    second_model_option(p, "--source", "the unquantized model: local directory or Hub id", required=True)
    p.add_argument("--revision", help="Hub revision of --source")
    p.add_argument(
        "--corpus",
        metavar="CORPUS",
        default=DEFAULT_CORPUS,
        help="text to score: a .txt or .jsonl ('text' field) file, or hub:NAME[:CONFIG][@SPLIT] "
        f"(default {DEFAULT_CORPUS})",
    )
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help="tokens per scored window")
    p.add_argument("--max-windows", type=int, help="score only the first N windows")
    p.add_argument("--top-k", type=int, default=MAX_LOGPROBS, help="log-probs per position for agreement and KL")
    p.add_argument(
        "--max-ppl-increase",
        type=float,
        metavar="PCT",
        help="exit 1 when the perplexity increase over the source exceeds PCT percent",
    )
    return p


def run(args: argparse.Namespace) -> EvalReport:
    from .. import evaluate

    return evaluate.run(
        **engine_options(args),
        **same_names(args, "revision", "seq_len", "top_k", "max_windows", "max_ppl_increase"),
        source_model=args.source,
        corpus_spec=args.corpus,
    )


def exit_code(report: EvalReport) -> int:
    """1, with an error line after the report, when --max-ppl-increase's gate failed."""
    gate = report.get("gate")
    if gate and not gate["passed"]:
        raise QuantizeError(
            f"perplexity increase {report['metrics']['perplexity_increase_pct']}% exceeds "
            f"--max-ppl-increase {gate['max_ppl_increase_pct']}%",
            "try --method gptq or --scheme groupwise, or raise the limit",
            exit_code=1,
        )
    return 0
