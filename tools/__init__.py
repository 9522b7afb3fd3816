"""Maintainer tools that are not tests: run from the repository root as `python -m tools.NAME`."""
