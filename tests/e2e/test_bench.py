"""`python -m quantize bench`: real vLLM generation timings for a checkpoint and its reference, side by side."""

from __future__ import annotations

import json
import platform

import pytest

from quantize import bench, host, records
from tests.helpers import error_line, run_cli


@pytest.mark.vllm
def test_bench_reports_both_models(quantized, tiny_llama, tmp_path):
    ckpt = quantized("tiny_llama", method="minmax", scheme="channelwise")
    sizes = ["--input-len", "32", "--output-len", "8", "--batch-sizes", "1,2", "--repeats", "1"]
    result = run_cli("bench", str(ckpt), "--reference", str(tiny_llama), *sizes, "--eager",
                     "--report-dir", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert records.problems(report, records.BenchReport) == []
    assert [m["label"].split(":")[0] for m in report["models"]] == ["reference", "quantized"]
    for model in report["models"]:
        assert [r["batch_size"] for r in model["results"]] == [1, 2]
        for row in model["results"]:
            assert row["ttft_s"] > 0 and row["prefill_tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0
    assert [r["batch_size"] for r in report["ratios"]] == [1, 2]
    machine = report["machine"]
    assert machine["cpu_count"] >= 1 and machine["cpus_allowed"] >= 1 and machine["cpu_model"]
    assert (platform.machine() == "x86_64") == ("note" in report)
    markdown = (tmp_path / "r" / bench.REPORT_NAME).read_text()
    assert "| model | batch | TTFT (s) | prefill tok/s | decode tok/s |" in markdown
    assert markdown.count(f"| quantized: {ckpt.name} |") == 2 and machine["cpu_model"] in markdown
    assert (tmp_path / "r" / bench.CHART_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_bad_arguments(tiny_llama, tmp_path):
    result = run_cli("bench", str(tiny_llama), "--batch-sizes", "1,x")
    assert result.returncode == 2 and "--batch-sizes" in error_line(result)
    result = run_cli("bench", str(tiny_llama), "--output-len", "1")
    assert result.returncode == 2 and "--output-len >= 2" in error_line(result)
    result = run_cli("bench", str(tmp_path))
    assert result.returncode == 2 and "is not a model directory" in error_line(result)


def test_cpu_model_names_target_arm_parts(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd40\n")
    real_path = host.Path
    monkeypatch.setattr(host, "Path", lambda p: real_path(cpuinfo) if p == "/proc/cpuinfo" else real_path(p))
    assert host.cpu_model() == "Arm Neoverse-V1 (Graviton3)"
