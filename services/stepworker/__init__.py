"""Integration Service stepworker."""
