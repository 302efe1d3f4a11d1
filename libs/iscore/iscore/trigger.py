"""Trigger steps: an application step that starts another application.

A step entry whose ``file`` is ``TriggerApplication`` is run by the planner
itself, never by a worker (MANUAL-NOTES 20):

    {"name": "sync children", "file": "TriggerApplication",
     "application": "child_app", "params": {"region": "${appvar.region}"},
     "blocking": true}

A blocking trigger finishes when the child run finishes, with the child's
outcome; while it waits it is a record in the store, so it holds no worker
slot. A non-blocking trigger succeeds once the child run is requested. The
step saves ``{"run_id": ..., "state": ...}`` for the steps it outputs to.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from iscore.errors import IscoreError
from iscore.models.step import StepMetadata, StepParameter
from iscore.substitution import SubstitutionScope, substitute

TRIGGER_FILE = "TriggerApplication"

TRIGGER_METADATA = StepMetadata(
    file=TRIGGER_FILE,
    friendly_name="Trigger Application",
    description="Starts another application, waiting for it when blocking.",
    version="1.0.0",
    parameters=(
        StepParameter(name="application", description="Application to start.",
                      sample_value="child_app", required=True),
        StepParameter(name="params", description="Run-time params for the child run.",
                      sample_value={"region": "eu"}, default_value={}),
        StepParameter(name="blocking", description="Wait for the child run to finish.",
                      sample_value=True, default_value=True),
    ),
)

# Child run ids derive from the trigger attempt, so starting a child twice
# (after a planner crash) starts one run.
_CHILD_NAMESPACE = uuid.UUID("5b0d8c36-7a57-4e53-9f4a-4a8f2f1d3c11")


class TriggerInvalidError(IscoreError):
    code = "invalid_trigger"


def is_trigger(file: str) -> bool:
    return file == TRIGGER_FILE


def child_run_id(task_id: str, attempt: int) -> str:
    """The run id of the child started by one attempt of a trigger step."""
    return f"isapp-{uuid.uuid5(_CHILD_NAMESPACE, f'{task_id}:{attempt}')}"


def trigger_request(
    entry: Mapping[str, Any], app_variables: Mapping[str, Any]
) -> tuple[str, dict[str, Any], bool]:
    """Read application, params and blocking from a trigger step's entry.

    ``${appvar.name}`` resolves in the values; configuration values belong
    to the child run and are chosen with ``params.configuration``.
    """
    scope = SubstitutionScope(app_variables=app_variables)
    application = substitute(entry.get("application"), scope=scope)
    params = substitute(entry.get("params") or {}, scope=scope)
    blocking = entry.get("blocking", True)
    step = entry.get("name")
    if not isinstance(application, str) or not application:
        raise TriggerInvalidError(
            f"Trigger step {step!r} needs parameter 'application': the name of the "
            "application to start.",
            field="application",
        )
    if not isinstance(params, dict):
        raise TriggerInvalidError(
            f"Trigger step {step!r} has 'params' of type {type(params).__name__}; "
            "it must be an object.",
            field="params",
        )
    if isinstance(blocking, str):
        blocking = blocking.strip().lower() in {"true", "1", "yes"}
    return application, params, bool(blocking)
