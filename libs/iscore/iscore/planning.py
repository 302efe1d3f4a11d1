"""The checks a run passes before any of its steps runs, and the plan they yield.

A missing step file, a required step parameter that is not set or a required
application variable without a value refuses the whole run up front
(MANUAL-NOTES 9 and 11). Run-time ``params`` override application variable
values; ``params.queue`` and ``params.configuration`` pick the run's queue
and configuration (MANUAL-NOTES 18).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from iscore.dag import Dag, build_dag
from iscore.errors import IscoreError
from iscore.models._validation import NAME_PATTERN
from iscore.models.application import Application, AppVariable, StepEntry, validate_queue_name
from iscore.models.step import StepMetadata
from iscore.subjects import DEFAULT_QUEUE

# Run-time params that choose how the run happens rather than variable values.
RESERVED_PARAMS = frozenset({"queue", "configuration"})


class StepNotFoundError(IscoreError):
    """An application names a step file that was never uploaded."""

    code = "step_not_found"

    def __init__(self, file: str, step: str | None = None, *, field: str | None = None) -> None:
        where = f" (used by step {step!r})" if step else ""
        super().__init__(
            f"Step file {file!r}{where} is not uploaded; upload it first or fix the "
            "step's file name.",
            field=field,
        )
        self.file = file
        self.step = step


class MissingParameterError(IscoreError):
    """A required step parameter is not set on the step and has no default."""

    code = "missing_parameter"

    def __init__(self, step: str, parameter: str, *, application: str, field: str) -> None:
        super().__init__(
            f"Step {step!r} needs parameter {parameter!r}, which is not set; set it on "
            f"the step in application {application!r}.",
            field=field,
        )
        self.step = step
        self.parameter = parameter
        self.application = application


class MissingVariableError(IscoreError):
    """A required application variable has no value, run-time param or default."""

    code = "missing_variable"

    def __init__(self, name: str, *, application: str, field: str) -> None:
        super().__init__(
            f"Application {application!r} needs variable {name!r}, which has no value "
            "and no default_value; set its value or pass it in the run's params.",
            field=field,
        )
        self.name = name
        self.application = application


class InvalidRunParameterError(IscoreError):
    """A run-time param that steers the run has an unusable value."""

    code = "invalid_parameter"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run will do, once its requirements are met.

    ``steps`` maps each step name to its entry with defaults filled in (base
    keys, declared parameter defaults); ``step_queues`` maps each step name to
    the queue its task goes to.
    """

    application: str
    app_variables: dict[str, Any]
    queue: str
    configuration: str | None
    steps: dict[str, dict[str, Any]]
    step_queues: dict[str, str]
    dag: Dag


def check_run_requirements(
    application: Application,
    step_metadata: Mapping[str, StepMetadata],
    params: Mapping[str, Any],
) -> RunPlan:
    """Check that ``application`` can run with ``params`` and return its plan.

    ``step_metadata`` maps step file names to what those files declare.
    Raises ``StepNotFoundError``, ``MissingParameterError``,
    ``MissingVariableError``, ``InvalidQueueError``, ``InvalidRunParameterError``
    or a ``DagError``.
    """
    dag = build_dag(application.steps)
    queue = _run_queue(application, params)
    configuration = _run_configuration(application, params)
    app_variables = _resolve_variables(application, params)

    steps: dict[str, dict[str, Any]] = {}
    step_queues: dict[str, str] = {}
    for index, step in enumerate(application.steps):
        metadata = step_metadata.get(step.file)
        if metadata is None:
            raise StepNotFoundError(step.file, step.name, field=f"steps[{index}].file")
        steps[step.name] = _filled_entry(application.name, index, step, metadata)
        step_queues[step.name] = step.queue or queue

    return RunPlan(
        application=application.name,
        app_variables=app_variables,
        queue=queue,
        configuration=configuration,
        steps=steps,
        step_queues=step_queues,
        dag=dag,
    )


def _run_queue(application: Application, params: Mapping[str, Any]) -> str:
    if "queue" in params and params["queue"] is not None:
        return validate_queue_name(params["queue"], field="params.queue")
    return application.queue or DEFAULT_QUEUE


def _run_configuration(application: Application, params: Mapping[str, Any]) -> str | None:
    chosen = params.get("configuration")
    if chosen is None:
        return application.configuration
    if not isinstance(chosen, str) or not NAME_PATTERN.fullmatch(chosen):
        raise InvalidRunParameterError(
            f"params.configuration: expected a configuration name (1 to 128 letters, "
            f"digits, '_', '-' or '.'), found {chosen!r}.",
            field="params.configuration",
        )
    return chosen


def _resolve_variables(application: Application, params: Mapping[str, Any]) -> dict[str, Any]:
    # Params that are not declared variables still reach ${appvar.x}, except
    # the reserved ones, which steer the run instead.
    declared = {variable.name for variable in application.app_variables}
    values = {
        name: value
        for name, value in params.items()
        if name not in RESERVED_PARAMS or name in declared
    }
    for index, variable in enumerate(application.app_variables):
        if variable.name not in values:
            values[variable.name] = _variable_value(application.name, index, variable)
    return values


def _variable_value(application: str, index: int, variable: AppVariable) -> Any:
    if variable.value is not None:
        return variable.value
    if variable.default_value is not None:
        return variable.default_value
    if variable.required:
        raise MissingVariableError(
            variable.name, application=application, field=f"app_variables[{index}].value"
        )
    return None


def _filled_entry(
    application: str, index: int, step: StepEntry, metadata: StepMetadata
) -> dict[str, Any]:
    entry = step.model_dump()
    for parameter in metadata.parameters:
        if parameter.name in entry:
            continue
        if parameter.default_value is not None:
            entry[parameter.name] = parameter.default_value
            continue
        if parameter.required:
            raise MissingParameterError(
                step.name,
                parameter.name,
                application=application,
                field=f"steps[{index}].{parameter.name}",
            )
    return entry
