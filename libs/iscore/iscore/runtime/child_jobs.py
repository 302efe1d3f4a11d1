"""The jobs production children run, and the parent-side call of ``inspect``.

``execute`` runs one step attempt and ``inspect`` reads a step file's
metadata; both run inside a pool child, never in a service process. The step
runtime is imported inside the functions: a child imports it while warming
up (``pool.DEFAULT_PRELOAD``), the parent never needs it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from iscore.errors import IscoreError

if TYPE_CHECKING:
    from iscore.models.step import StepMetadata
    from iscore.runtime.invocation import LogRecord
    from iscore.runtime.pool import ChildPool

# Target of ``ChildPool.run`` that executes a step: wire invocation in,
# wire outcome out.
EXECUTE_TARGET = "iscore.runtime.child_jobs:execute"

# Target of ``ChildPool.run`` that reads step metadata: msgpack
# ``{source, file}`` in, msgpack ``{metadata}`` or ``{error}`` out.
INSPECT_TARGET = "iscore.runtime.child_jobs:inspect"

LogSink = Callable[[dict[str, Any]], None]


class StepInspectionError(IscoreError):
    """Reading a step file's metadata failed: bad source or a failing ``__init__``.

    ``line`` is the line of the step file where it failed, when known;
    ``error_type`` the name of the exception raised in the child.
    """

    code = "step_inspection_failed"

    def __init__(
        self, message: str, *, file: str, line: int | None = None, error_type: str | None = None
    ) -> None:
        super().__init__(message, field="source")
        self.file = file
        self.line = line
        self.error_type = error_type


def execute(payload: bytes, on_log: LogSink) -> bytes:
    """Run the step attempt encoded in ``payload``; stream its log records.

    Step failures, a soft time limit included, are part of the returned
    outcome, not exceptions; a malformed payload raises ``CorruptDataError``.
    """
    from iscore.runtime.execution import execute_wire

    def relay(record: LogRecord) -> None:
        on_log({"level": record.level, "message": record.message, "at": record.at})

    return execute_wire(payload, on_log=relay)


def inspect(payload: bytes, on_log: LogSink) -> bytes:
    """Read the metadata of the step source in ``payload``.

    Answers ``{"metadata": {...}}`` or ``{"error": {type, message, line}}``;
    a failure of the step code is an answer, not an exception.
    """
    from iscore.runtime.loader import StepSourceError, inspect_step, step_filename

    request = msgpack.unpackb(payload, raw=False)
    file = request["file"]
    try:
        metadata = inspect_step(request["source"], file)
    except StepSourceError as error:
        answer = _error_answer(error, error.line)
    except Exception as error:  # noqa: BLE001 - user code in __init__ may raise anything
        answer = _error_answer(error, _line_in(error, step_filename(file)))
    else:
        answer = {"metadata": metadata.model_dump(mode="json")}
    return msgpack.packb(answer, use_bin_type=True)  # type: ignore[no-any-return]


async def inspect_in_sandbox(
    pool: ChildPool | None, source: str, file: str, *, time_limit_s: float = 5.0
) -> StepMetadata:
    """Read a step file's metadata in a child process, never in the caller.

    Uses ``pool`` when given, else a one-off child. Raises
    ``StepInspectionError`` when the source does not load, its ``__init__``
    raises, or the child crashes or overruns ``time_limit_s``.
    """
    from iscore.models.step import StepMetadata
    from iscore.runtime.pool import ChildPool

    request = msgpack.packb({"source": source, "file": file}, use_bin_type=True)
    if pool is None:
        async with ChildPool(size=1) as one_off:
            result = await one_off.run(
                INSPECT_TARGET, request, time_limit_s=time_limit_s, grace_s=1.0
            )
    else:
        result = await pool.run(INSPECT_TARGET, request, time_limit_s=time_limit_s, grace_s=1.0)

    if not result.succeeded or result.output is None:
        raise StepInspectionError(
            f"Step file {file!r} could not be inspected: {result.detail}.", file=file
        )
    answer = msgpack.unpackb(result.output, raw=False)
    if "error" in answer:
        error = answer["error"]
        where = f" at line {error['line']}" if error["line"] is not None else ""
        message = str(error["message"]).rstrip(".")
        raise StepInspectionError(
            f"Step file {file!r} failed{where} while its metadata was read: "
            f"{error['type']}: {message}.",
            file=file,
            line=error["line"],
            error_type=error["type"],
        )
    return StepMetadata.model_validate(answer["metadata"])


def _error_answer(error: BaseException, line: int | None) -> dict[str, Any]:
    return {"error": {"type": type(error).__name__, "message": str(error), "line": line}}


def _line_in(error: BaseException, filename: str) -> int | None:
    """Return the deepest line of ``filename`` in the error's traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    lines = [frame.lineno for frame in frames if frame.filename == filename]
    return lines[-1] if lines else None
