"""Test infrastructure: throw-away real services (a single-node Slurm) for tests and dev tools."""
