"""Speed benchmarks of bayescale against PyMC (run them as modules; see README.md)."""
