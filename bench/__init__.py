"""Benchmarks of the embedded system side by side with Celery (issue 9)."""
