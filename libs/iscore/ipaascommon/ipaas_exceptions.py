"""Exceptions a step raises or catches, under the names PowerFlow steps import.

Step files write ``from ipaascommon import ipaas_exceptions`` and catch or
raise these. Each is an ``IscoreError``, so services translate them like any
other iscore error.
"""

from __future__ import annotations

from iscore.errors import IscoreError
from iscore.runtime.limits import SoftTimeLimitExceeded

__all__ = [
    "SoftTimeLimitExceeded",
    "DataNotAvailableException",
    "IncompatibleDataException",
    "InvalidJsonException",
    "InvalidStepParameter",
    "IpaasException",
    "MissingRequiredStepParameter",
    "StepFailedException",
]


class IpaasException(IscoreError):
    """Base of the exceptions step code sees from ``BaseStep`` and helpers.

    ``step`` names the step (its ``name`` in the application) when known.
    """

    code = "step_error"

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class StepFailedException(IpaasException):
    """Raised by step code to fail the step with a readable message."""

    code = "step_failed"


class DataNotAvailableException(IpaasException):
    """Data of a previous step was asked for but does not reach this step.

    Either the named step has no ``output_to`` to the current step, the
    position is out of range, or the step saved no data. ``source`` names
    the previous step (or the position) that was asked for.
    """

    code = "data_not_available"

    def __init__(self, message: str, *, step: str | None = None, source: str = "") -> None:
        super().__init__(message, step=step)
        self.source = source


class IncompatibleDataException(IpaasException):
    """``join_previous_step_data`` met data of different types it cannot join."""

    code = "incompatible_data"


class MissingRequiredStepParameter(IpaasException):
    """Required parameters are absent from the step's entry in the application.

    ``parameters`` lists the missing names.
    """

    code = "missing_parameter"

    def __init__(
        self, message: str, *, step: str | None = None, parameters: tuple[str, ...]
    ) -> None:
        super().__init__(message, step=step)
        self.parameters = parameters


class InvalidStepParameter(IpaasException):
    """A parameter was asked for that is neither declared nor set on the step.

    ``parameter`` holds the name asked for.
    """

    code = "invalid_parameter"

    def __init__(self, message: str, *, step: str | None = None, parameter: str) -> None:
        super().__init__(message, step=step)
        self.parameter = parameter


class InvalidJsonException(IpaasException, ValueError):
    """Text given to ``json_utils`` holds no JSON object."""

    code = "invalid_json"
