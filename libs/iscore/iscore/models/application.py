"""Integration applications: the JSON document users upload, as models.

The shape follows the manual's "Creating an Integration Application":
top-level keys, ``app_variables`` and ``steps`` whose entries hold ``name``,
``file``, ``output_to``, the retry options and free step parameters.
Unknown keys are kept so a document comes back as it was uploaded.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from iscore.dag import build_dag
from iscore.errors import IscoreError
from iscore.models._validation import (
    check_bool,
    check_int,
    check_name,
    check_number,
    check_text,
    describe_validation_error,
    expected,
)

# Queue names become one NATS subject token (is.task.<queue>), so dots,
# wildcards and spaces would change the subject's meaning.
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9_\-]{1,64}")


class ApplicationInvalidError(IscoreError):
    """An application document does not have the shape the manual describes."""

    code = "invalid_application"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)


class InvalidQueueError(IscoreError):
    """A queue name cannot be used as a NATS subject token."""

    code = "invalid_queue"

    def __init__(self, queue: object, *, field: str = "queue") -> None:
        super().__init__(
            f"Queue {queue!r} is not a valid queue name: expected 1 to 64 letters, "
            "digits, '_' or '-' (no dots, spaces or wildcards).",
            field=field,
        )
        self.queue = queue


def validate_queue_name(name: object, *, field: str = "queue") -> str:
    """Return ``name`` if it is a valid queue name, else raise ``InvalidQueueError``."""
    if not isinstance(name, str) or not QUEUE_PATTERN.fullmatch(name):
        raise InvalidQueueError(name, field=field)
    return name


def _check_queue(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not QUEUE_PATTERN.fullmatch(value):
        raise expected(
            "expected 1 to 64 letters, digits, '_' or '-'",
            "dots, spaces and the wildcards '*' and '>' are not allowed in queue names",
        )
    return value


def _check_step_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise expected("expected a non-empty string")
    return value


def _check_file(value: Any) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise expected(
            "expected a step file name that is a Python identifier",
            "use the step's class name, without the .py suffix",
        )
    return value


def _check_output_to(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise expected("expected a list of step names", 'write it as ["step name"]')
    return value


_check_positive_seconds = check_number(minimum=0, inclusive=False)


def _check_time_limit(value: Any) -> float | None:
    return None if value is None else _check_positive_seconds(value)


def _check_configuration(value: Any) -> str | None:
    return None if value is None else check_name(value)


Flag = Annotated[bool, BeforeValidator(check_bool)]
Text = Annotated[str, BeforeValidator(check_text)]
QueueName = Annotated[str | None, BeforeValidator(_check_queue)]
DocumentName = Annotated[str, BeforeValidator(check_name)]


class StepEntry(BaseModel):
    """One entry of an application's ``steps`` list.

    Keys other than the ones declared here are the step's parameters
    (``prefix_url``, ``method`` ...), read with ``parameters()``. Seconds:
    ``retry_backoff_max``, ``retry_countdown`` and ``time_limit``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    BASE_KEYS: ClassVar[frozenset[str]]

    name: Annotated[str, BeforeValidator(_check_step_name)]
    file: Annotated[str, BeforeValidator(_check_file)]
    output_to: Annotated[list[str], BeforeValidator(_check_output_to)] = Field(default_factory=list)
    retry_max: Annotated[int, BeforeValidator(check_int(0))] = 0
    retry_backoff: Flag = False
    retry_jitter: Flag = False
    retry_backoff_max: Annotated[int, BeforeValidator(check_int(1))] = 600
    retry_countdown: Annotated[float, BeforeValidator(check_number(minimum=0, inclusive=True))] = (
        180
    )
    queue: QueueName = None
    time_limit: Annotated[float | None, BeforeValidator(_check_time_limit)] = None

    def parameters(self) -> dict[str, Any]:
        """The free keys of the entry: the step's parameters."""
        return dict(self.model_extra or {})


StepEntry.BASE_KEYS = frozenset(StepEntry.model_fields)


class AppVariable(BaseModel):
    """One entry of ``app_variables``; ``default_value`` stands in for no value."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, BeforeValidator(_check_step_name)]
    value: Any = None
    description: str | None = None
    required: Flag = False
    sample_value: Any = None
    default_value: Any = None


class Application(BaseModel):
    """An integration application; build it from a document with ``from_document``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: DocumentName
    friendly_name: Text | None = None
    description: Text | None = None
    author: Text | None = None
    version: Text | None = None
    configuration: Annotated[str | None, BeforeValidator(_check_configuration)] = None
    queue: QueueName = None
    generate_report: Flag = False
    app_variables: list[AppVariable] = Field(default_factory=list)
    steps: list[StepEntry] = Field(min_length=1)

    @classmethod
    def from_document(cls, document: Any) -> Application:
        """Validate an uploaded document, including its ``output_to`` links.

        Raises ``ApplicationInvalidError`` for a malformed document and a
        ``DagError`` subclass (``iscore.dag``) for bad links between steps.
        """
        if not isinstance(document, dict):
            raise ApplicationInvalidError(
                f"An application must be a JSON object, found {type(document).__name__}.",
                field="document",
            )
        try:
            application = cls.model_validate(document)
        except ValidationError as err:
            message, field = describe_validation_error(err)
            raise ApplicationInvalidError(message, field=field) from err

        _refuse_duplicate_variables(application)
        build_dag(application.steps)
        return application

    def to_document(self) -> dict[str, Any]:
        """The document as uploaded: extra keys kept, unset defaults left out."""
        return self.model_dump(exclude_unset=True)

    def step(self, name: str) -> StepEntry | None:
        """The step entry called ``name``, if there is one."""
        return next((s for s in self.steps if s.name == name), None)


def _refuse_duplicate_variables(application: Application) -> None:
    seen: set[str] = set()
    for index, variable in enumerate(application.app_variables):
        if variable.name in seen:
            raise ApplicationInvalidError(
                f"app_variables[{index}].name: expected a name not used by another "
                f"variable, found {variable.name!r}; rename or remove one of them.",
                field=f"app_variables[{index}].name",
            )
        seen.add(variable.name)
