"""stepTemplate: the starting point for a new step.

Copy this file, save it under your step's name and rename the class to
match (without the .py suffix). It runs as it is: it reads its parameter,
joins what previous steps saved and saves a greeting for the next steps.
"""

from ipaascommon import ipaas_exceptions
from ipaascore.BaseStep import BaseStep

# Keep parameter names in constants: they are the keys users write in the
# step's entry of the integration application.
MESSAGE = "message"
REPEAT = "repeat"


class stepTemplate(BaseStep):
    def __init__(self):
        # Shown in the user interface and in GET /api/v1/steps.
        self.friendly_name = "Step Template"
        self.description = "Template for new steps: reads a parameter and saves data."
        self.version = "1.0.0"

        # Parameters: a required one must be set in the application, or the
        # run is refused before any step starts; an optional one falls back
        # to its default_value.
        self.new_step_parameter(
            name=MESSAGE,
            description="text to pass on; may use ${config.x}, ${appvar.x} or data keys.",
            sample_value="Hello from ${appvar.greeting_target}",
            default_value="Hello from stepTemplate",
            required=False,
        )
        self.new_step_parameter(
            name=REPEAT,
            description="how many times to repeat the message (1 or more).",
            sample_value=1,
            default_value=1,
            required=False,
        )

    def execute(self):
        message = self.get_parameter(MESSAGE)
        repeat = self.get_parameter(REPEAT)
        if type(repeat) is not int or repeat < 1:
            raise ipaas_exceptions.StepFailedException(
                f"Parameter 'repeat' must be a whole number of 1 or more, found {repeat!r}."
            )

        # Data saved by the steps whose output_to names this step ({} when
        # none did); see get_data_from_step_by_name for one step's data.
        previous = self.join_previous_step_data()
        self.logger.info(
            "Step %s received data from %d previous step(s).",
            self.get_name(),
            len(self.get_available_previous_step_input_positions()),
        )

        self.save_data_for_next_step(
            {"message": " ".join([str(message)] * repeat), "previous": previous}
        )
