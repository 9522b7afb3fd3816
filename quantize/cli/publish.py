"""`python -m quantize publish DIR --repo-id ORG/NAME`: upload a checkpoint that validates to the Hub."""

from __future__ import annotations

import argparse

from .common import checkpoint_parser

NAME = "publish"
SUMMARY = "upload a checkpoint that validates to the Hugging Face Hub, with its model card"
HELP = (
    "Upload a checkpoint that validates to the Hugging Face Hub (token from HF_TOKEN or `hf auth login`, "
    "never printed); print the repository's URL."
)


def build() -> argparse.ArgumentParser:
    p = checkpoint_parser(NAME, HELP, engine=False)
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; contact nothing")
    return p


def run(args: argparse.Namespace) -> dict:
    from .. import publish

    return publish.run(args.directory, repo_id=args.repo_id, private=args.private, dry_run=args.dry_run)
