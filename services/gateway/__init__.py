"""Integration Service gateway."""
