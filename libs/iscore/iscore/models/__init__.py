"""Domain models: applications, steps, configurations, schedules, runs."""

from iscore.models.application import (
    Application,
    ApplicationInvalidError,
    AppVariable,
    InvalidQueueError,
    StepEntry,
    validate_queue_name,
)
from iscore.models.configuration import (
    Configuration,
    ConfigurationInvalidError,
    ConfigurationVariable,
)
from iscore.models.run import (
    ACTIVE_STATES,
    FINAL_STATES,
    RunRecord,
    RunState,
    StepTaskRecord,
    new_run_id,
    new_task_id,
)
from iscore.models.schedule import (
    CrontabInfo,
    FrequencyInfo,
    Schedule,
    ScheduleInvalidError,
    ScheduleSpec,
)
from iscore.models.step import StepMetadata, StepParameter

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "AppVariable",
    "Application",
    "ApplicationInvalidError",
    "Configuration",
    "ConfigurationInvalidError",
    "ConfigurationVariable",
    "CrontabInfo",
    "FrequencyInfo",
    "InvalidQueueError",
    "RunRecord",
    "RunState",
    "Schedule",
    "ScheduleInvalidError",
    "ScheduleSpec",
    "StepEntry",
    "StepMetadata",
    "StepParameter",
    "StepTaskRecord",
    "new_run_id",
    "new_task_id",
    "validate_queue_name",
]
