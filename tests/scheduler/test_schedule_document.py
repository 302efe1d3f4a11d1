"""Schedule documents: PowerFlow's shape, the misfire policy, refusals."""

from __future__ import annotations

from typing import Any

import pytest

from iscore.models.schedule import Misfire, Schedule, ScheduleInvalidError


def document(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "application_id": "nightly",
        "entry_id": "nightly-sync",
        "params": {"region": "eu"},
        "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}},
    }
    base.update(changes)
    return base


def test_schedule_id_is_its_entry_id() -> None:
    assert Schedule.from_document(document()).schedule_id == "nightly-sync"


def test_misfire_policy_defaults_to_skip_with_a_five_second_grace() -> None:
    assert Schedule.from_document(document()).misfire == Misfire(policy="skip", grace_s=5.0)


def test_catch_up_policy_reads_its_maximum() -> None:
    schedule = Schedule.from_document(
        document(misfire={"policy": "catch_up", "catch_up_max": 3, "grace_s": 1.5})
    )

    assert schedule.misfire == Misfire(policy="catch_up", catch_up_max=3, grace_s=1.5)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"entry_id": "has space"}, "entry_id", "letters, digits"),
        ({"application_id": ""}, "application_id", "letters, digits"),
        ({"id": "other"}, "id", "entry_id"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"enabled": "maybe"}, "enabled", "true or false"),
        ({"misfire": {"policy": "later"}}, "misfire", "policy"),
        ({"misfire": {"policy": "catch_up", "catch_up_max": 0}}, "misfire", "catch_up_max"),
        ({"misfire": {"catch_up_max": 2}}, "misfire", "only with policy 'catch_up'"),
        ({"misfire": {"grace_s": 0}}, "misfire", "grace_s"),
        (
            {"schedule": {"schedule_type": "crontab", "schedule_info": {"minute": "61"}}},
            "schedule.schedule_info",
            "'minute'",
        ),
        (
            {"schedule": {"schedule_type": "crontab", "schedule_info": {"day_of_week": "9"}}},
            "schedule.schedule_info",
            "'day_of_week'",
        ),
        (
            {"schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": "often"}}},
            "schedule.schedule_info",
            "run_every",
        ),
    ],
)
def test_invalid_schedule_is_refused_naming_the_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ScheduleInvalidError) as caught:
        Schedule.from_document(document(**changes))

    assert caught.value.field == field
    assert words in str(caught.value)
