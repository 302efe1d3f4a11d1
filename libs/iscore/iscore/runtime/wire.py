"""Bytes form of invocations and outcomes between the stepworker and its child.

Both are msgpack maps with a version ``v``. Step data inside them (each
input's ``data`` and the outcome's ``data``) is codec bytes, so a worker can
forward saved data without decoding it (``outcome_header_and_data``).
Entry, variables and configuration are plain JSON-like msgpack values.
"""

from __future__ import annotations

from typing import Any

import msgpack

from iscore import codec
from iscore.codec import CorruptDataError
from iscore.runtime.invocation import LogRecord, StepInput, StepInvocation, StepOutcome

__all__ = [
    "WIRE_VERSION",
    "invocation_from_wire",
    "invocation_to_wire",
    "outcome_from_wire",
    "outcome_header_and_data",
    "outcome_to_wire",
]

# Version written into and required from every wire map.
WIRE_VERSION = 1


def invocation_to_wire(invocation: StepInvocation) -> bytes:
    """Return the wire bytes of ``invocation``; input data goes through the codec.

    Raises ``UnsupportedDataError`` for input data the codec refuses.
    """
    inputs = [
        {
            "step_name": item.step_name,
            "has_data": item.has_data,
            "parameters": item.parameters,
            "data": codec.encode(item.data) if item.has_data else None,
        }
        for item in invocation.inputs
    ]
    header = {
        "v": WIRE_VERSION,
        "source": invocation.source,
        "file": invocation.file,
        "entry": invocation.entry,
        "app_variables": invocation.app_variables,
        "configuration": invocation.configuration,
        "application": invocation.application,
        "run_id": invocation.run_id,
        "task_id": invocation.task_id,
        "attempt": invocation.attempt,
        "inputs": inputs,
        "cache_url": invocation.cache_url,
    }
    return msgpack.packb(header, use_bin_type=True)


def invocation_from_wire(payload: bytes) -> StepInvocation:
    """Return the invocation in ``payload``, decoding each input's data.

    Raises ``CorruptDataError`` naming the field when the map is malformed.
    """
    header = _unpack(payload, "invocation")
    raw_inputs = _field(header, "inputs", list, "invocation")
    inputs = tuple(_input_from_wire(item, index) for index, item in enumerate(raw_inputs))
    return StepInvocation(
        source=_field(header, "source", str, "invocation"),
        file=_field(header, "file", str, "invocation"),
        entry=_field(header, "entry", dict, "invocation"),
        app_variables=_field(header, "app_variables", dict, "invocation"),
        configuration=_field(header, "configuration", dict, "invocation"),
        inputs=inputs,
        application=_field(header, "application", str, "invocation"),
        run_id=_field(header, "run_id", str, "invocation"),
        task_id=_field(header, "task_id", str, "invocation"),
        attempt=_field(header, "attempt", int, "invocation"),
        cache_url=_optional(header, "cache_url", str, "", "invocation"),
    )


def _input_from_wire(item: Any, index: int) -> StepInput:
    where = f"invocation input {index}"
    if not isinstance(item, dict):
        raise CorruptDataError(f"Wire {where} is {type(item).__name__!r}, expected a map.")
    has_data = _field(item, "has_data", bool, where)
    data_bytes = _field(item, "data", bytes | None, where)
    if has_data and data_bytes is None:
        raise CorruptDataError(f"Wire {where} has has_data true but no data bytes.")
    return StepInput(
        step_name=_field(item, "step_name", str, where),
        data=codec.decode(data_bytes) if has_data and data_bytes is not None else None,
        has_data=has_data,
        parameters=_field(item, "parameters", dict, where),
    )


def outcome_to_wire(outcome: StepOutcome, *, data_bytes: bytes | None = None) -> bytes:
    """Return the wire bytes of ``outcome``.

    ``data_bytes``, when given, is the codec encoding of ``outcome.data``
    already made (by ``save_data_for_next_step``); otherwise the data is
    encoded here. Raises ``UnsupportedDataError`` for data the codec refuses.
    """
    data = None
    if outcome.saved:
        data = data_bytes if data_bytes is not None else codec.encode(outcome.data)
    header = {
        "v": WIRE_VERSION,
        "saved": outcome.saved,
        "data": data,
        "logs": [{"level": r.level, "message": r.message, "at": r.at} for r in outcome.logs],
        "error_type": outcome.error_type,
        "error": outcome.error,
        "traceback": outcome.traceback,
        "report_rows": outcome.report_rows,
        "cache_writes": outcome.cache_writes,
    }
    return msgpack.packb(header, use_bin_type=True)


def outcome_header_and_data(payload: bytes) -> tuple[dict[str, Any], bytes | None]:
    """Split outcome wire bytes into its checked header and the raw data bytes.

    The header keeps every field but ``data``; its ``logs`` are checked
    maps with ``level``, ``message`` and ``at``; ``report_rows`` and
    ``cache_writes`` default to empty when a runtime did not send them. The data bytes stay encoded (None when nothing
    was saved). Raises ``CorruptDataError`` for a malformed map.
    """
    header = _unpack(payload, "outcome")
    saved = _field(header, "saved", bool, "outcome")
    data = _field(header, "data", bytes | None, "outcome")
    if saved and data is None:
        raise CorruptDataError("Wire outcome has saved true but no data bytes.")
    raw_logs = _field(header, "logs", list, "outcome")
    checked = {
        "v": header["v"],
        "saved": saved,
        "logs": [_checked_log(item, index) for index, item in enumerate(raw_logs)],
        "error_type": _field(header, "error_type", str | None, "outcome"),
        "error": _field(header, "error", str | None, "outcome"),
        "traceback": _field(header, "traceback", str | None, "outcome"),
        "report_rows": _optional(header, "report_rows", list, [], "outcome"),
        "cache_writes": _optional(header, "cache_writes", dict, {}, "outcome"),
    }
    return checked, data if saved else None


def outcome_from_wire(payload: bytes) -> StepOutcome:
    """Return the outcome in ``payload`` with its saved data decoded.

    Raises ``CorruptDataError`` for a malformed map or data.
    """
    header, data = outcome_header_and_data(payload)
    return StepOutcome(
        saved=header["saved"],
        data=codec.decode(data) if data is not None else None,
        logs=[LogRecord(**line) for line in header["logs"]],
        error_type=header["error_type"],
        error=header["error"],
        traceback=header["traceback"],
        report_rows=header["report_rows"],
        cache_writes=header["cache_writes"],
    )


def _checked_log(item: Any, index: int) -> dict[str, Any]:
    where = f"outcome log {index}"
    if not isinstance(item, dict):
        raise CorruptDataError(f"Wire {where} is {type(item).__name__!r}, expected a map.")
    at = _field(item, "at", float | int, where)
    return {
        "level": _field(item, "level", str, where),
        "message": _field(item, "message", str, where),
        "at": float(at),
    }


def _unpack(payload: bytes, what: str) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(payload, raw=False)
    except (ValueError, TypeError, OverflowError) as err:
        raise CorruptDataError(
            f"Wire {what} of {len(payload)} bytes is not msgpack ({type(err).__name__}: {err})."
        ) from err
    if not isinstance(header, dict):
        raise CorruptDataError(f"Wire {what} is {type(header).__name__!r}, expected a map.")
    version = header.get("v")
    if version != WIRE_VERSION:
        raise CorruptDataError(
            f"Wire {what} has version {version!r}, expected {WIRE_VERSION}; "
            "the worker and the step runtime are from different releases."
        )
    return header


def _optional(header: dict[str, Any], name: str, kind: Any, default: Any, where: str) -> Any:
    """A field added after wire version 1 shipped: absent means ``default``."""
    return _field(header, name, kind, where) if name in header else default


def _field(header: dict[str, Any], name: str, kind: Any, where: str) -> Any:
    if name not in header:
        raise CorruptDataError(f"Wire {where} lacks field {name!r}.")
    value = header[name]
    # bool is an int; an attempt or a timestamp must not be given as one.
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        raise CorruptDataError(
            f"Wire {where} field {name!r} has type {type(value).__name__!r}, which is "
            "not what wire version 1 expects."
        )
    return value
