"""Benchmarks: `python -m bench.<name>`; each also exposes a function returning its figures."""
