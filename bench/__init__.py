"""Bastion benchmarks (see ../shared/BENCHMARKS.md); run them with `python -m bench`."""
