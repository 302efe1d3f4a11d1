"""The scheduler service: timed run requests from schedules."""
