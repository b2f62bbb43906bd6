"""gmemtrace benchmarks: `make bench` (python -m benchmarks)."""
