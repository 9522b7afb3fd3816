"""`python -m quantize eval`: perplexity, top-1 agreement and KL through real vLLM engines, the gate, the report.

The tiny Llama is scored on text from its own training distribution (tests.tiny_models.corpus with another
seed), so its perplexity is low and a broken layer shows. Measured: the good minmax g32 checkpoint costs
between -0.2 % and +1 % perplexity (it can come out below the reference on 504 tokens); the same
checkpoint with every weight scale x4 far more (one layer's down_proj x4 alone: +2.3 %). The gate at 10 %
separates them.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from quantize import evaluate, manifest, records
from tests import tiny_models
from tests.helpers import error_line, run_cli

GATE_PCT = "10"


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "held-out.txt"
    path.write_text("\n".join(tiny_models.corpus(lines=300, seed=1)))
    return path


@pytest.fixture(scope="module")
def good(quantized, tmp_path_factory) -> Path:
    """A copy of the shared checkpoint: eval adds its report and a manifest entry."""
    shared = quantized("tiny_llama", method="minmax", scheme="groupwise")
    return Path(shutil.copytree(shared, tmp_path_factory.mktemp("eval") / "g32"))


def run_eval(ckpt: Path, reference: Path, corpus: Path, *extra: str):
    result = run_cli("eval", str(ckpt), "--reference", str(reference), "--corpus", str(corpus), "--seq-len", "64",
                     "--max-windows", "8", "--eager", *extra)  # fmt: skip
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result, report


@pytest.mark.vllm
def test_good_checkpoint_report_and_gate(good, tiny_llama, corpus_file):
    result, report = run_eval(good, tiny_llama, corpus_file, "--max-ppl-increase", GATE_PCT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert records.problems(report, records.EvalReport) == []
    m = report["metrics"]
    assert m["tokens_scored"] == 8 * 63 and report["windows"] == 8
    assert 1.0 < m["perplexity_reference"] < 20.0  # in-distribution text: the model learned it
    assert -2.0 < m["perplexity_increase_pct"] < float(GATE_PCT)  # can dip below 0: noise on 504 tokens
    assert 0.9 <= m["top1_agreement"] <= 1.0 and 0.0 <= m["mean_kl_divergence"] < 0.1
    assert report["gate"] == {"max_ppl_increase_pct": float(GATE_PCT), "passed": True}
    assert report["reference_score_seconds"] > 0 and report["quantized_score_seconds"] > 0
    markdown = (good / evaluate.REPORT_NAME).read_text()
    assert f"| quantized | {m['perplexity_quantized']:.3f} |" in markdown and "**passed**" in markdown
    entries = manifest.read(good)["evaluations"]
    assert records.problems(manifest.read(good), records.Manifest) == []
    assert records.problems(entries[-1], records.EvalReport) == []
    assert entries[-1]["metrics"] == m and entries[-1]["corpus"] == str(corpus_file)
    card = (good / "README.md").read_text()  # the model card now carries the table, and still validates
    assert f"| quantized | {m['perplexity_quantized']:.3f} |" in card and "Not measured yet" not in card
    assert run_cli("validate", str(good)).returncode == 0


@pytest.mark.vllm
def test_gate_rejects_planted_bad_checkpoint(good, tiny_llama, corpus_file, tmp_path):
    bad = Path(shutil.copytree(good, tmp_path / "bad"))
    tensors = load_file(bad / "model.safetensors")
    for name in [n for n in tensors if n.endswith(".weight_scale")]:
        tensors[name] *= 4
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    result, report = run_eval(bad, tiny_llama, corpus_file, "--max-ppl-increase", GATE_PCT)
    assert result.returncode == 1
    assert report["gate"]["passed"] is False and report["metrics"]["perplexity_increase_pct"] > float(GATE_PCT)
    assert error_line(result).startswith("error: perplexity increase") and "(fix: " in error_line(result)
    assert "**FAILED**" in (bad / evaluate.REPORT_NAME).read_text()


def test_bad_arguments_fail_with_one_line(tiny_llama, tmp_path):
    result = run_cli("eval", str(tmp_path / "missing"), "--reference", str(tiny_llama))
    assert result.returncode == 2 and "does not exist" in error_line(result)
    result = run_cli("eval", str(tiny_llama), "--reference", str(tiny_llama), "--corpus", str(tmp_path / "no.txt"))
    assert result.returncode == 2 and "is not a file" in error_line(result)


def test_kl_topk_vs_topk():
    p = {1: math.log(0.5), 2: math.log(0.3)}
    assert evaluate.kl_topk_vs_topk(p, dict(p)) == pytest.approx(0.0, abs=1e-12)
    q = {1: math.log(0.3), 2: math.log(0.5)}
    expected = 0.5 * math.log(0.5 / 0.3) + 0.3 * math.log(0.3 / 0.5)  # the 0.2 "rest" buckets cancel
    assert evaluate.kl_topk_vs_topk(p, q) == pytest.approx(expected)
    # token 2 missing from Q's top-k: it gets Q's smallest listed probability (0.1)
    q_missing = {1: math.log(0.6), 3: math.log(0.1)}
    expected = 0.5 * math.log(0.5 / 0.6) + 0.3 * math.log(0.3 / 0.1) + 0.2 * math.log(0.2 / 0.3)
    assert evaluate.kl_topk_vs_topk(p, q_missing) == pytest.approx(expected)


def test_compare_and_perplexity():
    ref = {"actual": [math.log(0.5)] * 4, "top": [{1: math.log(0.5), 2: math.log(0.4)}] * 4}
    quant = {"actual": [math.log(0.25)] * 4, "top": [{1: math.log(0.5), 2: math.log(0.4)}] * 2
             + [{2: math.log(0.6), 1: math.log(0.25)}] * 2}  # fmt: skip
    m = evaluate.compare(ref, quant)
    assert m["perplexity_reference"] == pytest.approx(2.0) and m["perplexity_quantized"] == pytest.approx(4.0)
    assert m["perplexity_increase_pct"] == pytest.approx(100.0) and m["top1_agreement"] == 0.5
    assert m["tokens_scored"] == 4 and m["mean_kl_divergence"] > 0
