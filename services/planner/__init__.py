"""Integration Service planner."""
