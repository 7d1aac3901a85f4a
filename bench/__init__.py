"""Benchmarks: `python -m bench` runs all into docs/benchmarks.md, `python -m bench.NAME` one."""
