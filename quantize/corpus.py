"""Text for evaluation and calibration: a user's file, a Hub dataset, or the small corpora shipped here.

Built in (offline, in `quantize/data/`):
- `eval.txt`: about 17 KB of public-domain English (Lincoln, the Declaration, Austen, Dickens, Melville,
  Shakespeare, the King James Bible, Poe, Carroll, Doyle, ...), used by `eval`;
- `calibration.txt`: about 8 KB of text written for this project (prose, dialogue, instructions, code, SQL),
  used by `--method gptq`. The two never overlap, so calibration cannot flatter the evaluation.

Sources: a path to a `.txt` file (read whole) or a `.jsonl` file (one JSON object per line, its `text`
field), or `hub:NAME[:CONFIG][@SPLIT]` for a Hugging Face dataset with a `text` column (needs the Hub).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .errors import QuantizeError

BUILTIN = {"builtin:eval": "eval.txt", "builtin:calibration": "calibration.txt"}
HUB_PREFIX = "hub:"


def load_texts(spec: str) -> list[str]:
    """The documents named by `spec` (see the module docstring); a one-line error for anything else."""
    if spec in BUILTIN:
        return [resources.files(__package__).joinpath("data", BUILTIN[spec]).read_text(encoding="utf-8")]
    if spec.startswith(HUB_PREFIX):
        return _hub_texts(spec[len(HUB_PREFIX) :])
    path = Path(spec)
    if not path.is_file():
        raise QuantizeError(
            f"text source {spec!r} is not a file",
            f"give a .txt or .jsonl path, hub:NAME[:CONFIG][@SPLIT], or one of {', '.join(BUILTIN)}",
        )
    if path.suffix == ".jsonl":
        return _jsonl_texts(path)
    text = read_text(path)
    if not text.strip():
        raise QuantizeError(f"{path} is empty", "give a file with some text in it")
    return [text]


def read_text(path: Path) -> str:
    """A file's contents if they are UTF-8 text; a one-line error for anything else (binary data, another
    encoding), naming where it stops being text."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise QuantizeError(
            f"{path} is not UTF-8 text (byte {e.start} is {data[e.start : e.start + 1].hex()})",
            "give a UTF-8 .txt or .jsonl file (iconv -t utf-8 converts one)",
        ) from None
    if problem := binary_problem(text):
        raise QuantizeError(f"{path} is binary data, not text ({problem})", "give a UTF-8 .txt or .jsonl file")
    return text


def binary_problem(text: str) -> str | None:
    """Why `text` is binary rather than writing (a NUL, or more than 1 % control characters other than
    whitespace), or None. Valid UTF-8 is not enough: NUL-padded or packed data can be valid UTF-8."""
    if (nul := text.find("\0")) >= 0:
        return f"a NUL at character {nul}"
    controls = sum(1 for c in text if c < " " and c not in "\t\n\r\f\v")
    if controls > max(1, len(text) // 100):
        return f"{controls} control characters in {len(text)}"
    return None


def _jsonl_texts(path: Path) -> list[str]:
    texts = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise QuantizeError(f"{path}:{number} is not JSON ({e.msg})", "write one JSON object per line") from e
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise QuantizeError(f"{path}:{number} has no string 'text' field", 'write lines like {"text": "..."}')
        texts.append(record["text"])
    if not texts:
        raise QuantizeError(f"{path} has no records", 'write lines like {"text": "..."}')
    if not any(t.strip() for t in texts):
        raise QuantizeError(f"{path}: every 'text' field is empty", 'write lines like {"text": "..."}')
    if problem := binary_problem("".join(texts)):
        raise QuantizeError(f"{path}: its 'text' fields are binary data ({problem})", "give text in them")
    return texts


def _hub_texts(name: str) -> list[str]:
    name, _, split = name.partition("@")
    name, _, config = name.partition(":")
    try:
        from datasets import load_dataset

        dataset = load_dataset(name, config or None, split=split or "train")
    except Exception as e:  # datasets raises many types (connection, missing config, gated, ...)
        raise QuantizeError(
            f"could not load Hub dataset {name!r}: {str(e).splitlines()[0][:200]}",
            "check the name, config and split, your network and HF_TOKEN, or pass a local .txt/.jsonl file",
        ) from e
    if "text" not in dataset.column_names:
        raise QuantizeError(
            f"Hub dataset {name!r} has no 'text' column (columns: {', '.join(dataset.column_names)})",
            "export the column you want to a .jsonl file with a 'text' field and pass that",
        )
    return [t for t in dataset["text"] if t and t.strip()]


def calibration_windows(tokenizer, texts: list[str], seq_len: int, max_windows: int, source: str) -> list:
    """`token_windows` for calibration, refused in one line when the text does not fill one window."""
    windows = token_windows(tokenizer, texts, seq_len, max_windows)
    tokens = sum(map(len, windows))
    if tokens < seq_len:
        raise QuantizeError(
            f"calibration text {source} has {tokens} tokens, fewer than one window of {seq_len}",
            "give more text with --calibration, or a shorter --calibration-seq-len",
        )
    return windows


def token_windows(tokenizer, texts: list[str], seq_len: int, max_windows: int | None = None) -> list[list[int]]:
    """The documents tokenized, joined and cut into consecutive windows of `seq_len` tokens (the last,
    shorter one kept when it has at least two tokens, so it still scores one prediction)."""
    if seq_len < 2:
        raise QuantizeError(f"sequence length {seq_len} is too short", "use at least 2 tokens (default 512)")
    ids = tokenizer("\n\n".join(texts))["input_ids"]
    windows = [ids[i : i + seq_len] for i in range(0, len(ids), seq_len)]
    windows = [w for w in windows if len(w) >= 2]
    return windows[:max_windows] if max_windows else windows
