"""Integration Service iscli."""
