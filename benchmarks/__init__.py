"""Benchmarks: polyformer and the reference implementation on the same work, in the same process.

`python -m benchmarks.run` (or `make bench`) runs every CPU benchmark, prints a markdown table of
figures and ratios, and writes the same numbers as JSON to `benchmarks/results/cpu.json`.
"""
