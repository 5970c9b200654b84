"""Benchmarks and the soak run: run from the repository root as modules (python3 -m bench.bench)."""
