"""Domain models: applications, steps, configurations, schedules."""
