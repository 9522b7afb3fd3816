"""Where the model comes from: a local directory or a Hugging Face Hub repository.

Hub access goes through huggingface_hub, so downloads resume, show its progress bars and honour HF_HOME,
HF_HUB_OFFLINE and HF_TOKEN (read by huggingface_hub itself from the environment; this module never
reads, prints or stores the token). Every Hub failure a user can fix becomes a QuantizeError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import read_json
from .errors import QuantizeError, disk_full

# Files a quantization run needs from a Hub repository (weights, configs, tokenizer). Custom modelling
# code (*.py) is fetched only with --trust-remote-code.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
# Any one of these is a tokenizer transformers (and so vLLM) can load: fast, SentencePiece, BPE or WordPiece
# vocabularies, tiktoken, Mistral's tekken.
TOKENIZER_FILES = ("tokenizer.json", "*.model", "vocab.json", "vocab.txt", "*.tiktoken", "tekken.json")


@dataclass(frozen=True)
class Source:
    """A resolved model: `path` is a local directory holding at least config.json."""

    model_id: str
    path: Path
    revision: str | None  # the Hub commit sha, None for local directories
    is_local: bool


def looks_like_path(model_id: str) -> bool:
    return model_id.startswith(("/", "./", "../", "~")) or model_id.count("/") > 1 or os.sep * 2 in model_id


def check_trust_remote_code(model_id: str, revision: str | None, trust_remote_code: bool) -> None:
    if trust_remote_code and not os.path.isdir(model_id) and not revision:
        raise QuantizeError(
            f"--trust-remote-code runs Python code from the Hub repository {model_id}, but no --revision pins it",
            "pass --revision <commit sha> after reviewing that commit's code, or drop --trust-remote-code "
            "(transformers 5 runs DeepSeek-V2 natively)",
        )


def _local(model_id: str) -> Source:
    path = Path(model_id).expanduser()
    if not path.is_dir():
        raise QuantizeError(
            f"model path {model_id} is not a directory",
            "pass a local model directory or a Hub id such as deepseek-ai/DeepSeek-V2-Lite",
        )
    if not (path / "config.json").is_file():
        raise QuantizeError(
            f"{model_id} is not a Hugging Face model directory (no config.json)",
            "point MODEL at the directory that holds config.json and the *.safetensors files",
        )
    return Source(model_id=model_id, path=path.resolve(), revision=None, is_local=True)


def _hub(model_id: str, revision: str | None, config_only: bool, trust_remote_code: bool) -> Source:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = ["config.json"] if config_only else HUB_PATTERNS + (["*.py"] if trust_remote_code else [])
    try:
        path = snapshot_download(model_id, revision=revision, allow_patterns=patterns)
    except GatedRepoError as exc:
        raise QuantizeError(
            f"{model_id} is a gated model and this request was not authorized",
            "accept the model's licence on huggingface.co, then export HF_TOKEN=<a read token> "
            "(or run 'hf auth login')",
        ) from exc
    except RevisionNotFoundError as exc:
        raise QuantizeError(
            f"revision {revision} does not exist in {model_id}", "pass an existing branch, tag or commit to --revision"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise QuantizeError(
            f"model {model_id} was not found on the Hugging Face Hub (or it is private)",
            "check the id, or export HF_TOKEN for a private model; for a local model pass an existing directory",
        ) from exc
    except HFValidationError as exc:
        raise QuantizeError(
            f"{model_id} is neither an existing directory nor a valid Hub model id",
            "pass a local model directory or a Hub id such as deepseek-ai/DeepSeek-V2-Lite",
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise QuantizeError(
            f"model {model_id} is not in the local Hugging Face cache and the Hub cannot be reached",
            "connect to the network (and unset HF_HUB_OFFLINE), or set HF_HOME to the cache that holds it",
        ) from exc
    except OSError as exc:
        if not disk_full(exc):
            raise
        raise QuantizeError(
            f"the Hugging Face cache ran out of space while downloading {model_id}",
            "free space there, or set HF_HOME to a filesystem with more room",
        ) from exc
    return Source(model_id=model_id, path=Path(path), revision=Path(path).name, is_local=False)


def resolve(
    model_id: str, revision: str | None = None, *, config_only: bool = False, trust_remote_code: bool = False
) -> Source:
    """Find the model. With `config_only`, fetch only config.json from the Hub (for early checks)."""
    if os.path.isdir(os.path.expanduser(model_id)) or looks_like_path(model_id):
        return _local(model_id)
    return _hub(model_id, revision, config_only, trust_remote_code)


def buildable_config(source: Source, trust_remote_code: bool = False) -> dict:
    """config.json, checked for what transformers needs to build the model: a model_type it can load as a
    causal LM (or, with --trust-remote-code, the repository's own classes in auto_map)."""
    from transformers import CONFIG_MAPPING, __version__
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = read_json(source.path / "config.json")
    config = config if isinstance(config, dict) else {}
    quantization = config.get("quantization_config")
    if isinstance(quantization, dict) and quantization.get("quant_method") == "fp8":
        raise QuantizeError(
            f"{source.model_id} is an FP8 checkpoint (quantization_config quant_method fp8, as DeepSeek-V3/R1 "
            "ship): this tool quantizes bf16, fp16 or fp32 weights",
            "dequantize it to bf16 first (DeepSeek-V3's inference/fp8_cast_bf16.py does), then quantize that",
        )
    if quantization:
        raise QuantizeError(
            f"{source.model_id} is already quantized (its config.json has a quantization_config)",
            "quantize the original, unquantized model",
        )
    if trust_remote_code and "AutoModelForCausalLM" in config.get("auto_map", {}):
        return config
    model_type = config.get("model_type")
    if model_type is None:
        raise QuantizeError(
            f"config.json of {source.model_id} has no model_type",
            'restore the model\'s original config.json (its model_type names the architecture, e.g. "llama")',
        )
    if model_type not in CONFIG_MAPPING:
        raise QuantizeError(
            f"transformers {__version__} does not know model type {model_type!r} (config.json of {source.model_id})",
            "upgrade transformers, or pass --trust-remote-code if the repository ships its own modelling code",
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise QuantizeError(
            f"{source.model_id} is a {model_type!r} model, which transformers cannot load as a causal language model",
            "quantize a causal (decoder-only) language model",
        )
    return config


def has_tokenizer(directory: Path) -> bool:
    return any(next(directory.glob(pattern), None) for pattern in TOKENIZER_FILES)
