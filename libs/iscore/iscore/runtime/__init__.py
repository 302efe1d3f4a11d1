"""Step runtime: BaseStep, the execution of one step attempt, the test harness."""
