"""Integration Service embedded."""
