"""Benchmarks: each script runs alone (`python bench/NAME.py --help`) or through
`python -m bench`, which writes every figure as JSON with the command that produced it."""
