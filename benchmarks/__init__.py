"""Side-by-side benchmarks of oceandata (run ``python -m benchmarks`` for the list)."""
