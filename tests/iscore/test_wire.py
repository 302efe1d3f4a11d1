from __future__ import annotations

from typing import Any

import msgpack
import pytest

from iscore import codec
from iscore.codec import CorruptDataError
from iscore.runtime.execution import execute_wire
from iscore.runtime.invocation import LogRecord, StepInput, StepInvocation, StepOutcome
from iscore.runtime.wire import (
    invocation_from_wire,
    invocation_to_wire,
    outcome_from_wire,
    outcome_header_and_data,
    outcome_to_wire,
)

INVOCATION = StepInvocation(
    source="class S: pass\n",
    file="S",
    entry={"name": "s", "file": "S", "x": 1},
    app_variables={"v": "a"},
    configuration={"pw": "secret"},
    inputs=(
        StepInput("A", {"t": (1, 2), "s": {3}}, parameters={"p": 1}),
        StepInput("B", None, has_data=False),
    ),
    application="app",
    run_id="r1",
    task_id="t1",
    attempt=2,
)


def header() -> dict[str, Any]:
    return msgpack.unpackb(invocation_to_wire(INVOCATION), raw=False)


def test_invocation_round_trips_with_input_data_through_the_codec() -> None:
    assert invocation_from_wire(invocation_to_wire(INVOCATION)) == INVOCATION


def test_invocation_wire_format_is_the_documented_map() -> None:
    raw = header()

    assert raw["v"] == 1
    assert raw["inputs"][0]["data"] == codec.encode({"t": (1, 2), "s": {3}})
    assert raw["inputs"][1] == {"step_name": "B", "has_data": False, "parameters": {},
                                "data": None}


def test_invocation_with_wrong_version_is_refused() -> None:
    raw = header() | {"v": 2}

    with pytest.raises(CorruptDataError, match="version 2"):
        invocation_from_wire(msgpack.packb(raw))


@pytest.mark.parametrize(
    ("field", "value"),
    [("source", 5), ("entry", []), ("attempt", "1"), ("attempt", True), ("inputs", {})],
)
def test_invocation_with_a_malformed_field_is_refused_naming_it(field: str, value: Any) -> None:
    raw = header() | {field: value}

    with pytest.raises(CorruptDataError, match=f"'{field}'"):
        invocation_from_wire(msgpack.packb(raw))


def test_invocation_missing_a_field_is_refused() -> None:
    raw = header()
    del raw["file"]

    with pytest.raises(CorruptDataError, match="lacks field 'file'"):
        invocation_from_wire(msgpack.packb(raw))


def test_invocation_input_with_data_flag_but_no_bytes_is_refused() -> None:
    raw = header()
    raw["inputs"][0]["data"] = None

    with pytest.raises(CorruptDataError, match="input 0"):
        invocation_from_wire(msgpack.packb(raw))


def test_invocation_that_is_not_msgpack_is_refused() -> None:
    with pytest.raises(CorruptDataError):
        invocation_from_wire(b"\xc1garbage")


def test_invocation_that_is_not_a_map_is_refused() -> None:
    with pytest.raises(CorruptDataError, match="expected a map"):
        invocation_from_wire(msgpack.packb([1, 2]))


OUTCOME = StepOutcome(
    saved=True,
    data={"rows": [(1, "a")]},
    logs=[LogRecord("info", "hi", 1.5)],
)


def test_outcome_round_trips() -> None:
    assert outcome_from_wire(outcome_to_wire(OUTCOME)) == OUTCOME


def test_failed_outcome_round_trips() -> None:
    failed = StepOutcome(error_type="ValueError", error="x", traceback="Traceback ...")

    assert outcome_from_wire(outcome_to_wire(failed)) == failed


def test_outcome_header_and_data_keeps_the_data_encoded() -> None:
    header_part, data = outcome_header_and_data(outcome_to_wire(OUTCOME))

    assert data == codec.encode(OUTCOME.data)
    assert "data" not in header_part
    assert header_part["logs"] == [{"level": "info", "message": "hi", "at": 1.5}]
    assert header_part["saved"] is True


def test_outcome_to_wire_uses_already_encoded_data_bytes() -> None:
    payload = outcome_to_wire(OUTCOME, data_bytes=b"\x91\x01")

    assert outcome_header_and_data(payload)[1] == b"\x91\x01"


def test_outcome_with_saved_flag_but_no_data_is_refused() -> None:
    raw = msgpack.unpackb(outcome_to_wire(OUTCOME), raw=False) | {"data": None}

    with pytest.raises(CorruptDataError, match="saved true"):
        outcome_header_and_data(msgpack.packb(raw))


def test_outcome_with_a_malformed_log_is_refused() -> None:
    raw = msgpack.unpackb(outcome_to_wire(OUTCOME), raw=False) | {"logs": [{"level": 1}]}

    with pytest.raises(CorruptDataError, match="log 0"):
        outcome_header_and_data(msgpack.packb(raw))


def test_execute_wire_runs_the_step_and_returns_the_outcome_bytes() -> None:
    source = (
        "from ipaascore.BaseStep import BaseStep\n"
        "class Echo(BaseStep):\n"
        "    def __init__(self):\n"
        "        pass\n"
        "    def execute(self):\n"
        "        self.save_data_for_next_step(self.get_data_from_step_by_name('A'))\n"
    )
    invocation = StepInvocation(
        source=source, file="Echo", entry={"name": "e", "file": "Echo"},
        inputs=(StepInput("A", {"t": (1, 2)}),),
    )

    outcome = outcome_from_wire(execute_wire(invocation_to_wire(invocation)))

    assert outcome.succeeded
    assert outcome.data == {"t": (1, 2)}
