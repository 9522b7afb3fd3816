"""`python -m quantize publish DIR --repo-id ORG/NAME`: upload a checkpoint that validates to the Hugging Face Hub.

Choices:
- Refuse before uploading anything: a repo id that is not ORG/NAME, offline mode or a missing token (checked
  before validation, which reads every byte of the checkpoint), and a checkpoint `validate` rejects.
- Upload every regular file of DIR except hidden ones (a name starting with "." at any level: what an interrupted
  run leaves), through huggingface_hub's `create_repo` (the repository is created if missing; an existing one
  keeps its visibility, whatever --private says) and `upload_folder` (large files through Xet storage when
  hf_xet is installed, else Git LFS; small ones inline in the commit).
- `--dry-run` lists those files without a token and without any network access.
- The token comes from huggingface_hub (HF_TOKEN or the `hf auth login` cache) and goes only into its requests:
  a failure is reported from the HTTP status and the server's message, never from huggingface_hub's exception.
"""

from __future__ import annotations

import gc
import glob
import logging
from pathlib import Path

import httpx
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from . import validate
from .errors import QuantizeError
from .hashing import visible_files
from .output import human_size

logger = logging.getLogger(__name__)

COMMIT_MESSAGE = "Upload W4A8-dynamic checkpoint (vllm-arm-int4)"
REPO_ID_FIX = "ORG/NAME of letters, digits, '-', '_' and '.', e.g. --repo-id my-org/DeepSeek-V2-Lite-w4a8"
TOKEN_FIX = "set HF_TOKEN or run `hf auth login`"


def check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1  # the validator also accepts a bare NAME
    except HFValidationError:
        valid = False
    if not valid:
        raise QuantizeError(f"--repo-id {repo_id!r} is not a Hub repository id ORG/NAME", REPO_ID_FIX)


def hub_token() -> str:
    """The token huggingface_hub will send, once offline mode is ruled out."""
    if constants.is_offline_mode():
        raise QuantizeError(
            "Hugging Face offline mode is on (HF_HUB_OFFLINE), so nothing can be uploaded",
            "run publish with HF_HUB_OFFLINE=0 (the container image sets it to 1)",
        )
    token = get_token()
    if not token:
        raise QuantizeError("no Hugging Face token", TOKEN_FIX)
    return token


def check_valid(directory: Path) -> None:
    logger.info("validating %s before publishing it", directory)
    try:
        validate.validate(directory)
    except QuantizeError as exc:
        raise QuantizeError(f"not published: {exc.message}", exc.hint, exc.exit_code) from exc


def listing(directory: Path) -> list[dict]:
    """What is uploaded: every file but hidden ones, sorted, with its size."""
    return [
        {"path": path.relative_to(directory).as_posix(), "bytes": path.stat().st_size}
        for path in visible_files(directory)
    ]


def upload(directory: Path, repo_id: str, private: bool, files: list[dict], token: str) -> dict:
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=directory,
        repo_id=repo_id,
        repo_type="model",
        allow_patterns=[glob.escape(f["path"]) for f in files],  # exact names: [, * and ? are wildcards
        commit_message=COMMIT_MESSAGE,
    )
    return {"url": str(url), "commit": commit.commit_url}


def hub_error(exc: BaseException | None, repo_id: str, token: str) -> QuantizeError | None:
    """The failure to reach or upload to the Hub behind `exc` as one line, or None if there is none.
    huggingface_hub wraps some (a failed LFS upload in a RuntimeError), so the chain of causes is searched."""
    while exc is not None:
        if isinstance(exc, HfHubHTTPError):
            return http_error(exc, repo_id, token)
        if isinstance(exc, httpx.TransportError):
            return QuantizeError(
                f"cannot reach the Hugging Face Hub at {constants.ENDPOINT}: {describe(exc, token)}",
                "check the network connection (and HF_ENDPOINT, if set), then run publish again",
            )
        if isinstance(exc, ConnectionError):  # what hf_xet raises, for Xet storage and its token endpoint alike
            return QuantizeError(
                f"the upload to Xet storage failed: {describe(exc, token)}",
                f"check the token's write access to {repo_id} and the network, then run publish again",
            )
        exc = exc.__cause__ or exc.__context__
    return None


def http_error(exc: HfHubHTTPError, repo_id: str, token: str) -> QuantizeError:
    status = exc.response.status_code
    if status in (401, 403):
        return QuantizeError(
            f"the Hub refused the token for {repo_id} (HTTP {status})",
            f"use a token with write access to {repo_id.split('/')[0]} (huggingface.co/settings/tokens): {TOKEN_FIX}",
        )
    request = exc.response.request
    detail = f": {describe(exc.server_message, token)}" if exc.server_message else ""
    return QuantizeError(
        f"the Hub answered HTTP {status} to {request.method} {request.url.path}{detail}",
        "check --repo-id and the token's permissions, then run publish again",
    )


def describe(detail: object, token: str) -> str:
    """The first line of an exception or a server's message, without the token should it hold it."""
    lines = str(detail).strip().splitlines() or [type(detail).__name__]
    return lines[0].replace(token, "<token>")


def run(directory: str | Path, repo_id: str, private: bool = False, dry_run: bool = False) -> dict:
    check_repo_id(repo_id)
    token = None if dry_run else hub_token()
    directory = Path(directory)
    check_valid(directory)
    files = listing(directory)
    total = sum(f["bytes"] for f in files)
    if dry_run:
        return {"repo_id": repo_id, "private": private, "dry_run": True, "files": files, "total_bytes": total}
    logger.info("uploading %d files (%s) to %s", len(files), human_size(total), repo_id)
    try:
        published = upload(directory, repo_id, private, files, token)
    except Exception as exc:
        error = hub_error(exc, repo_id, token)
        if error is None:
            raise
    else:
        return {"repo_id": repo_id, "private": private, **published, "files": files, "total_bytes": total}
    # Raised once the failure is dropped and collected: a failed LFS upload's progress bar is in a reference cycle
    # with it (huggingface_hub's tqdm_stream_file), and would otherwise print its last state after the error line.
    gc.collect()
    raise error
