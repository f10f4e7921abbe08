"""Side-by-side benchmarks of underway against its peers (run with ``python -m bench.<name>``)."""
