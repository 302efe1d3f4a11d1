"""Running one step attempt: load, instantiate, validate, execute, collect.

This runs step code, so it belongs in the child process (or the local test
harness). Failures of step code never escape: they become the outcome's
``error_type``, ``error`` and ``traceback``.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from iscore.runtime.basestep import (
    StepContext,
    attach_context,
    current_context,
    install_context,
    uninstall_context,
)
from iscore.runtime.invocation import LogRecord, StepInvocation, StepOutcome
from iscore.runtime.loader import load_step_class
from iscore.runtime.wire import invocation_from_wire, outcome_to_wire

__all__ = ["StepAttempt", "execute_step", "execute_wire", "run_attempt"]


@dataclass(slots=True)
class StepAttempt:
    """An outcome plus what only the process that ran the step holds.

    ``data_bytes`` is the codec encoding of the saved data, made when the
    step saved it; ``exception`` is the exception object step code raised.
    """

    outcome: StepOutcome
    data_bytes: bytes | None = None
    exception: BaseException | None = None


def run_attempt(
    invocation: StepInvocation, *, on_log: Callable[[LogRecord], None] | None = None
) -> StepAttempt:
    """Run one attempt of the step in ``invocation``; never raises for step failures.

    The step class is loaded from ``invocation.source``, instantiated with
    its runtime context installed, its required parameters are checked
    (MANUAL-NOTES 11), then ``execute()`` runs. ``on_log`` receives each
    ``self.logger`` line as it is written.
    """
    context = StepContext(invocation=invocation, on_log=on_log)
    try:
        _run(invocation, context)
    except (Exception, SystemExit) as err:
        # Any failure of step code is the step's result, not ours.
        return _failed(context, err)
    outcome = StepOutcome(
        saved=context.saved,
        data=context.saved_data,
        logs=context.logs,
        report_rows=context.report_rows,
        cache_writes=context.cache_writes,
    )
    return StepAttempt(outcome=outcome, data_bytes=context.saved_bytes)


def _run(invocation: StepInvocation, context: StepContext) -> None:
    step_class = load_step_class(invocation.source, invocation.file)
    token = install_context(context)
    try:
        step = step_class()
    finally:
        uninstall_context(token)
    if current_context(step) is not context:
        # A step class overriding __new__ bypassed BaseStep.__new__.
        attach_context(step, context)
    step.validate_parameter_values()
    step.execute()


def _failed(context: StepContext, err: BaseException) -> StepAttempt:
    outcome = StepOutcome(
        saved=False,
        logs=context.logs,
        error_type=type(err).__name__,
        # Never empty: an exception without a message (MemoryError()) is named.
        error=str(err) or type(err).__name__,
        traceback=_format_traceback(err),
    )
    return StepAttempt(outcome=outcome, exception=err)


def _format_traceback(err: BaseException) -> str:
    """Format ``err`` without this module's own frames at the top."""
    tb: TracebackType | None = err.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(err), err, tb))


def execute_step(
    invocation: StepInvocation, *, on_log: Callable[[LogRecord], None] | None = None
) -> StepOutcome:
    """Run one attempt and return its outcome; never raises for step failures.

    See ``run_attempt``. ``outcome.data`` is the object the step saved.
    """
    return run_attempt(invocation, on_log=on_log).outcome


def execute_wire(payload: bytes, *, on_log: Callable[[LogRecord], None] | None = None) -> bytes:
    """Run the invocation in wire form ``payload`` and return the outcome's wire form.

    The saved data is forwarded as the bytes encoded when the step saved
    it, never encoded twice. Raises ``CorruptDataError`` for a malformed
    payload.
    """
    invocation = invocation_from_wire(payload)
    attempt = run_attempt(invocation, on_log=on_log)
    return outcome_to_wire(attempt.outcome, data_bytes=attempt.data_bytes)
