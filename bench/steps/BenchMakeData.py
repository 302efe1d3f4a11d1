from ipaascore.BaseStep import BaseStep


class BenchMakeData(BaseStep):
    def __init__(self):
        self.friendly_name = "Benchmark: save size_bytes of data"
        self.new_step_parameter(name="size_bytes", required=True)

    def execute(self):
        self.save_data_for_next_step(b"x" * int(self.get_parameter("size_bytes")))
