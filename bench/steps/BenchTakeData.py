from ipaascore.BaseStep import BaseStep


class BenchTakeData(BaseStep):
    def __init__(self):
        self.friendly_name = "Benchmark: read the previous step's data"

    def execute(self):
        self.save_data_for_next_step(len(self.join_previous_step_data()))
