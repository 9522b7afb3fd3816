"""What is in a directory, file by file: sha256 digests (manifest, validate) and a cheap size/mtime fingerprint
(whether a streaming run may resume)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def visible_files(directory: Path) -> Iterator[Path]:
    """Every regular file under `directory`, sorted, skipping hidden ones (symlinks into the HF cache are
    followed)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts):
            yield path


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, by relative path."""
    return {str(p.relative_to(directory)): sha256_file(p) for p in visible_files(directory)}


def file_stats(directory: Path) -> dict[str, list[int]]:
    """[size, mtime_ns] of every file: a cheap fingerprint of a source (to decide whether a resume is safe)."""
    return {str(p.relative_to(directory)): [p.stat().st_size, p.stat().st_mtime_ns] for p in visible_files(directory)}
