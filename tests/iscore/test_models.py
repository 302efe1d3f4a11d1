from datetime import UTC, datetime
from typing import Any

import pytest
from iscore.models import (
    Application,
    ApplicationInvalidError,
    Configuration,
    ConfigurationInvalidError,
    InvalidQueueError,
    RunRecord,
    RunState,
    Schedule,
    ScheduleInvalidError,
    StepEntry,
    StepTaskRecord,
    validate_queue_name,
)
from iscore.models.schedule import CrontabInfo, FrequencyInfo


def application_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "fetch_devices",
        "friendly_name": "Fetch devices",
        "version": "1.0",
        "steps": [
            {
                "name": "GETgoogle.com",
                "file": "QueryREST",
                "prefix_url": "http://google.com",
                "method": "GET",
                "output_to": ["next_step"],
            },
            {"name": "next_step", "file": "someOtherTask"},
        ],
    }
    document.update(changes)
    return document


def invalid_application(document: dict[str, Any]) -> ApplicationInvalidError:
    with pytest.raises(ApplicationInvalidError) as caught:
        Application.from_document(document)
    return caught.value


def test_application_from_manual_example_reads_steps_and_links() -> None:
    application = Application.from_document(application_document())

    assert application.name == "fetch_devices"
    assert [step.name for step in application.steps] == ["GETgoogle.com", "next_step"]
    assert application.steps[0].output_to == ["next_step"]


def test_step_entry_defaults_follow_the_manual_retry_options() -> None:
    step = StepEntry(name="a", file="A")

    assert (step.retry_max, step.retry_backoff, step.retry_jitter) == (0, False, False)
    assert (step.retry_backoff_max, step.retry_countdown) == (600, 180)
    assert step.output_to == []
    assert step.queue is None
    assert step.time_limit is None


def test_step_parameters_are_the_free_keys_only() -> None:
    application = Application.from_document(application_document())

    assert application.steps[0].parameters() == {
        "prefix_url": "http://google.com",
        "method": "GET",
    }


def test_step_name_may_contain_spaces() -> None:
    step = StepEntry(name="Fetch devices", file="FetchDevices")

    assert step.name == "Fetch devices"


def test_invalid_retry_max_names_field_path_expectation_and_value() -> None:
    document = application_document()
    document["steps"][1]["retry_max"] = "x"

    error = invalid_application(document)

    assert str(error) == "steps[1].retry_max: expected an integer >= 0, found 'x'."
    assert error.field == "steps[1].retry_max"
    assert error.code == "invalid_application"


def test_retry_options_accept_python_style_true_written_as_text() -> None:
    document = application_document()
    document["steps"][0].update(retry_backoff="True", retry_max="5")

    application = Application.from_document(document)

    assert application.steps[0].retry_backoff is True
    assert application.steps[0].retry_max == 5


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retry_max", -1),
        ("retry_max", True),
        ("retry_backoff_max", 0),
        ("retry_countdown", -0.5),
        ("time_limit", 0),
        ("retry_backoff", "maybe"),
        ("output_to", "next_step"),
    ],
)
def test_out_of_range_step_options_are_refused_with_their_field(key: str, value: Any) -> None:
    document = application_document()
    document["steps"][0][key] = value

    error = invalid_application(document)

    assert error.field == f"steps[0].{key}"
    assert repr(value) in str(error)


def test_step_file_must_be_a_python_identifier() -> None:
    document = application_document()
    document["steps"][0]["file"] = "QueryREST.py"

    error = invalid_application(document)

    assert error.field == "steps[0].file"
    assert "without the .py suffix" in str(error)


def test_missing_step_name_is_reported_as_missing() -> None:
    document = application_document()
    del document["steps"][1]["name"]

    error = invalid_application(document)

    assert str(error) == "steps[1].name: expected a value, found nothing; add it."


@pytest.mark.parametrize("name", ["my app", "", "a/b", "x" * 129])
def test_application_name_with_spaces_or_symbols_is_refused(name: str) -> None:
    error = invalid_application(application_document(name=name))

    assert error.field == "name"


def test_application_needs_at_least_one_step() -> None:
    error = invalid_application(application_document(steps=[]))

    assert error.field == "steps"
    assert "at least 1" in str(error)


def test_document_that_is_not_an_object_is_refused() -> None:
    error = invalid_application(["not", "an", "object"])  # type: ignore[arg-type]

    assert error.field == "document"


def test_numeric_version_is_kept_as_text() -> None:
    application = Application.from_document(application_document(version=2.1))

    assert application.version == "2.1"


def test_to_document_returns_the_upload_with_extra_keys_and_no_added_defaults() -> None:
    document = application_document(custom_flag={"owner": "ops"})
    document["app_variables"] = [{"name": "region", "value": "eu"}]

    application = Application.from_document(document)

    assert application.to_document() == document


def test_duplicate_app_variable_names_are_refused() -> None:
    document = application_document(
        app_variables=[{"name": "region", "value": "eu"}, {"name": "region", "value": "us"}]
    )

    error = invalid_application(document)

    assert error.field == "app_variables[1].name"


def test_from_document_checks_output_to_links() -> None:
    document = application_document()
    document["steps"][0]["output_to"] = ["nowhere"]

    with pytest.raises(Exception, match="nowhere") as caught:
        Application.from_document(document)

    assert caught.value.code == "unknown_step_link"  # type: ignore[attr-defined]


@pytest.mark.parametrize("queue", ["default", "gpu-workers", "eu_west_1", "q" * 64])
def test_queue_names_of_letters_digits_dash_and_underscore_are_valid(queue: str) -> None:
    assert validate_queue_name(queue) == queue


@pytest.mark.parametrize("queue", ["a.b", "a*", ">", "has space", "", "q" * 65, 3])
def test_queue_names_that_would_change_a_subject_are_refused(queue: Any) -> None:
    with pytest.raises(InvalidQueueError) as caught:
        validate_queue_name(queue)

    assert repr(queue) in str(caught.value)
    assert caught.value.code == "invalid_queue"
    assert caught.value.field == "queue"


def test_application_queue_is_validated_like_any_queue_name() -> None:
    error = invalid_application(application_document(queue="a.>"))

    assert error.field == "queue"


def configuration_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "author": "ScienceLogic, Inc.",
        "description": "Demo.",
        "name": "fsun-demo-settings",
        "friendly_name": "Demo Settings",
        "configuration_data": [
            {"encrypted": False, "name": "em7_host", "value": "10.2.11.42"},
            {"encrypted": True, "name": "em7_password", "value": "+dqGJe1N="},
        ],
    }
    document.update(changes)
    return document


def test_configuration_from_manual_example_keeps_variables_and_flags() -> None:
    configuration = Configuration.from_document(configuration_document())

    assert configuration.values() == {"em7_host": "10.2.11.42", "em7_password": "+dqGJe1N="}
    assert [v.encrypted for v in configuration.configuration_data] == [False, True]
    assert configuration.to_document() == configuration_document()


def test_configuration_variable_names_must_be_unique() -> None:
    document = configuration_document()
    document["configuration_data"].append({"name": "em7_host", "value": "other"})

    with pytest.raises(ConfigurationInvalidError) as caught:
        Configuration.from_document(document)

    assert caught.value.field == "configuration_data[2].name"
    assert caught.value.code == "invalid_configuration"


def test_configuration_name_with_spaces_is_refused() -> None:
    with pytest.raises(ConfigurationInvalidError) as caught:
        Configuration.from_document(configuration_document(name="demo settings"))

    assert caught.value.field == "name"


def test_frequency_schedule_reads_run_every_seconds() -> None:
    schedule = Schedule.from_document(
        {
            "application_id": "fetch_devices",
            "entry_id": "every-minute",
            "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}},
        }
    )

    assert schedule.schedule.schedule_info == FrequencyInfo(run_every=60)
    assert (schedule.timezone, schedule.enabled, schedule.params) == ("UTC", True, {})


def test_crontab_schedule_fills_absent_fields_with_star() -> None:
    schedule = Schedule.from_document(
        {
            "application_id": "fetch_devices",
            "entry_id": "nightly",
            "schedule": {"schedule_type": "crontab", "schedule_info": {"minute": 0, "hour": "2"}},
            "timezone": "Europe/Paris",
        }
    )

    assert schedule.schedule.schedule_info == CrontabInfo(minute="0", hour="2")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 0}}},
            "schedule.schedule_info",
        ),
        ({"schedule": {"schedule_type": "hourly", "schedule_info": {}}}, "schedule.schedule_type"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_invalid_schedule_names_the_field(changes: dict[str, Any], field: str) -> None:
    document = {
        "application_id": "fetch_devices",
        "entry_id": "e",
        "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}},
        **changes,
    }

    with pytest.raises(ScheduleInvalidError) as caught:
        Schedule.from_document(document)

    assert caught.value.field == field


def test_final_run_states_are_success_failure_and_revoked() -> None:
    final = {state for state in RunState if state.is_final}

    assert final == {RunState.SUCCESS, RunState.FAILURE, RunState.REVOKED}


def test_run_record_gets_an_isapp_id_and_can_be_copied_with_changes() -> None:
    run = RunRecord(application="fetch_devices", application_version=1)

    started = run.model_copy(update={"state": RunState.STARTED})

    assert run.run_id.startswith("isapp-")
    assert run.state is RunState.PENDING
    assert started.state is RunState.STARTED
    assert run.created_at.tzinfo is not None


def test_run_record_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="created_at"):
        RunRecord(
            application="a",
            application_version=1,
            created_at=datetime(2024, 1, 1),  # noqa: DTZ001
        )


def test_step_task_starts_pending_at_attempt_zero() -> None:
    task = StepTaskRecord(run_id="isapp-x", name="a", file="A", position=0)

    assert (task.state, task.attempt, task.result, task.has_data) == (
        RunState.PENDING,
        0,
        None,
        False,
    )
    assert task.model_copy(update={"finished_at": datetime.now(UTC)}).finished_at is not None
