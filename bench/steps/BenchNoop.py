from ipaascore.BaseStep import BaseStep


class BenchNoop(BaseStep):
    def __init__(self):
        self.friendly_name = "Benchmark no-op"

    def execute(self):
        pass
