from typing import Any

import pytest
from iscore.models.application import Application, InvalidQueueError
from iscore.models.step import StepMetadata, StepParameter
from iscore.planning import (
    InvalidRunParameterError,
    MissingParameterError,
    MissingVariableError,
    StepNotFoundError,
    check_run_requirements,
)

QUERY_REST = StepMetadata(
    file="QueryREST",
    parameters=(
        StepParameter(name="method", required=True),
        StepParameter(name="prefix_url", required=True),
        StepParameter(name="timeout", default_value=30),
        StepParameter(name="verify", required=True, default_value=True),
        StepParameter(name="proxy"),
    ),
)
SINK = StepMetadata(file="Sink")
METADATA = {"QueryREST": QUERY_REST, "Sink": SINK}


def application(**changes: Any) -> Application:
    document: dict[str, Any] = {
        "name": "fetch_devices",
        "steps": [
            {
                "name": "Fetch devices",
                "file": "QueryREST",
                "method": "GET",
                "prefix_url": "http://example.com",
                "output_to": ["store"],
            },
            {"name": "store", "file": "Sink", "queue": "storage"},
        ],
    }
    document.update(changes)
    return Application.from_document(document)


def test_plan_fills_parameter_defaults_into_step_entries() -> None:
    plan = check_run_requirements(application(), METADATA, {})

    entry = plan.steps["Fetch devices"]
    assert entry["timeout"] == 30
    assert entry["verify"] is True
    assert "proxy" not in entry
    assert entry["retry_countdown"] == 180


def test_value_set_on_the_step_wins_over_parameter_default() -> None:
    app = application()
    document = app.to_document()
    document["steps"][0]["timeout"] = 5

    plan = check_run_requirements(Application.from_document(document), METADATA, {})

    assert plan.steps["Fetch devices"]["timeout"] == 5


def test_missing_required_parameter_refuses_the_run_naming_step_and_parameter() -> None:
    document = application().to_document()
    del document["steps"][0]["prefix_url"]

    with pytest.raises(MissingParameterError) as caught:
        check_run_requirements(Application.from_document(document), METADATA, {})

    assert str(caught.value) == (
        "Step 'Fetch devices' needs parameter 'prefix_url', which is not set; "
        "set it on the step in application 'fetch_devices'."
    )
    assert (caught.value.step, caught.value.parameter) == ("Fetch devices", "prefix_url")
    assert caught.value.field == "steps[0].prefix_url"
    assert caught.value.code == "missing_parameter"


def test_step_file_without_metadata_is_not_found() -> None:
    with pytest.raises(StepNotFoundError) as caught:
        check_run_requirements(application(), {"QueryREST": QUERY_REST}, {})

    assert (caught.value.file, caught.value.step) == ("Sink", "store")
    assert caught.value.code == "step_not_found"


def test_run_params_override_application_variable_values() -> None:
    app = application(app_variables=[{"name": "region", "value": "eu"}])

    plan = check_run_requirements(app, METADATA, {"region": "us"})

    assert plan.app_variables["region"] == "us"


def test_default_value_stands_in_for_an_absent_variable_value() -> None:
    app = application(app_variables=[{"name": "region", "required": True, "default_value": "eu"}])

    plan = check_run_requirements(app, METADATA, {})

    assert plan.app_variables == {"region": "eu"}


def test_required_variable_without_any_value_refuses_the_run() -> None:
    app = application(app_variables=[{"name": "region", "required": True}])

    with pytest.raises(MissingVariableError) as caught:
        check_run_requirements(app, METADATA, {})

    assert caught.value.name == "region"
    assert caught.value.code == "missing_variable"
    assert caught.value.field == "app_variables[0].value"


def test_required_variable_given_at_run_time_lets_the_run_go() -> None:
    app = application(app_variables=[{"name": "region", "required": True}])

    plan = check_run_requirements(app, METADATA, {"region": "us"})

    assert plan.app_variables["region"] == "us"


def test_run_goes_to_default_queue_unless_application_or_params_choose() -> None:
    assert check_run_requirements(application(), METADATA, {}).queue == "default"
    assert check_run_requirements(application(queue="bulk"), METADATA, {}).queue == "bulk"
    assert (
        check_run_requirements(application(queue="bulk"), METADATA, {"queue": "urgent"}).queue
        == "urgent"
    )


def test_step_with_its_own_queue_keeps_it_and_others_follow_the_run() -> None:
    plan = check_run_requirements(application(), METADATA, {"queue": "urgent"})

    assert plan.step_queues == {"Fetch devices": "urgent", "store": "storage"}


def test_queue_param_that_is_not_a_valid_queue_name_is_refused() -> None:
    with pytest.raises(InvalidQueueError) as caught:
        check_run_requirements(application(), METADATA, {"queue": "a.*"})

    assert caught.value.field == "params.queue"


def test_configuration_param_overrides_the_application_configuration() -> None:
    app = application(configuration="prod")

    assert check_run_requirements(app, METADATA, {}).configuration == "prod"
    assert check_run_requirements(app, METADATA, {"configuration": "lab"}).configuration == "lab"


def test_configuration_param_must_be_a_configuration_name() -> None:
    with pytest.raises(InvalidRunParameterError) as caught:
        check_run_requirements(application(), METADATA, {"configuration": "has space"})

    assert caught.value.field == "params.configuration"


def test_queue_and_configuration_params_are_not_application_variables() -> None:
    plan = check_run_requirements(application(), METADATA, {"queue": "q", "configuration": "c"})

    assert plan.app_variables == {}


def test_plan_carries_the_dag_in_application_order() -> None:
    plan = check_run_requirements(application(), METADATA, {})

    assert plan.application == "fetch_devices"
    assert plan.dag.names == ("Fetch devices", "store")
    assert plan.dag.inputs_of("store") == ("Fetch devices",)
