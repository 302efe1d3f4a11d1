"""Integration Service services."""
