"""Research benchmarks and data fetchers, run from the repository root as `python -m benchmarks.<name>`
(see benchmarks/README.md). Not part of the package or the image."""
