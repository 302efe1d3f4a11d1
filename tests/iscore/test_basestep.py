from __future__ import annotations

from typing import Any

import pytest

from ipaascommon.ipaas_exceptions import (
    DataNotAvailableException,
    IncompatibleDataException,
    InvalidStepParameter,
    MissingRequiredStepParameter,
)
from ipaascore.BaseStep import BaseStep
from iscore.codec import UnsupportedDataError
from iscore.runtime.basestep import StepContext, current_context, install_context, uninstall_context
from iscore.runtime.invocation import LogRecord, StepInput, StepInvocation
from iscore.substitution import SubstitutionError


class BareStep(BaseStep):
    def __init__(self) -> None:
        pass

    def execute(self) -> None:
        pass


class DeclaringStep(BaseStep):
    def __init__(self) -> None:
        self.friendly_name = "Declaring"
        self.new_step_parameter(name="host", description="d", sample_value="h", required=True)
        self.new_step_parameter(name="port", default_value=443)
        self.new_step_parameter(name="path", default_value="/${config.base}")
        self.new_step_parameter(name="flag", required="False")

    def double(self, value: str) -> int:
        return 2 * int(value)

    def execute(self) -> None:
        pass


INPUTS = (
    StepInput("A", {"a": 1, "shared": "from A"}, parameters={"limit": 5}),
    StepInput("B", {"b": 2, "shared": "from B"}),
    StepInput("C", None, has_data=False),
)


def make(
    cls: type[BaseStep],
    *,
    entry: dict[str, Any] | None = None,
    inputs: tuple[StepInput, ...] = INPUTS,
    on_log: Any = None,
) -> BaseStep:
    invocation = StepInvocation(
        source="",
        file=cls.__name__,
        entry={"name": "current", "file": cls.__name__, **(entry or {})},
        app_variables={"region": "eu"},
        configuration={"base": "api"},
        inputs=inputs,
    )
    token = install_context(StepContext(invocation=invocation, on_log=on_log))
    try:
        return cls()
    finally:
        uninstall_context(token)


def test_step_without_super_init_still_has_every_feature() -> None:
    step = make(BareStep, entry={"x": "${appvar.region}"})

    step.logger.info("hello")
    step.save_data_for_next_step([1])

    assert step.get_name() == "current"
    assert step.get_parameter("x") == "eu"
    assert step.get_data_from_step_by_order(1) == {"b": 2, "shared": "from B"}
    assert current_context(step).logs[0].message == "hello"
    assert current_context(step).saved_data == [1]


def test_step_instantiated_outside_the_executor_gets_a_standalone_context() -> None:
    step = DeclaringStep()

    assert step.get_name() == "DeclaringStep"
    assert step.get_parameter("port") == 443
    assert step.get_available_previous_step_input_positions() == []


def test_class_attributes_default_to_empty_text() -> None:
    step = make(BareStep)

    assert (step.friendly_name, step.description, step.version) == ("", "", "")


def test_get_app_variable_returns_the_value() -> None:
    assert make(BareStep).get_app_variable("region") == "eu"


def test_get_app_variable_refuses_an_undefined_name() -> None:
    with pytest.raises(InvalidStepParameter, match="'nope'.*defined: 'region'"):
        make(BareStep).get_app_variable("nope")


def test_positions_follow_the_input_order_from_zero() -> None:
    positions = make(BareStep).get_available_previous_step_input_positions()

    assert positions == [("A", 0), ("B", 1), ("C", 2)]


def test_get_data_from_step_by_name_returns_that_steps_data() -> None:
    assert make(BareStep).get_data_from_step_by_name("A")["a"] == 1


def test_get_data_from_step_by_name_refuses_a_step_that_does_not_feed_this_one() -> None:
    with pytest.raises(DataNotAvailableException, match="'Z', which does not feed") as info:
        make(BareStep).get_data_from_step_by_name("Z")

    assert info.value.source == "Z"
    assert info.value.step == "current"


def test_reading_a_step_that_saved_nothing_raises_data_not_available() -> None:
    with pytest.raises(DataNotAvailableException, match="saved none"):
        make(BareStep).get_data_from_step_by_name("C")


def test_get_data_from_step_by_order_returns_the_input_at_that_position() -> None:
    assert make(BareStep).get_data_from_step_by_order(0)["a"] == 1


@pytest.mark.parametrize("position", [3, -1, "0", 1.0])
def test_get_data_from_step_by_order_refuses_a_bad_position(position: Any) -> None:
    with pytest.raises(DataNotAvailableException, match="positions run from 0 to 2"):
        make(BareStep).get_data_from_step_by_order(position)


def test_get_parameter_reads_the_entry() -> None:
    step = make(DeclaringStep, entry={"host": "h1"})

    assert step.get_parameter("host") == "h1"


def test_get_parameter_fills_an_absent_optional_parameter_with_its_default() -> None:
    step = make(DeclaringStep, entry={"host": "h1"})

    assert step.get_parameter("port") == 443
    assert step.get_parameter("flag") is None


def test_get_parameter_substitutes_in_defaults_too() -> None:
    assert make(DeclaringStep).get_parameter("path") == "/api"


def test_get_parameter_reads_undeclared_keys_set_on_the_entry() -> None:
    step = make(BareStep, entry={"method": "GET"})

    assert step.get_parameter("method") == "GET"


def test_get_parameter_refuses_a_name_neither_declared_nor_set() -> None:
    with pytest.raises(InvalidStepParameter, match="neither declared") as info:
        make(BareStep).get_parameter("nope")

    assert info.value.parameter == "nope"


def test_get_parameter_refuses_an_absent_required_parameter() -> None:
    with pytest.raises(MissingRequiredStepParameter, match="needs parameter 'host'"):
        make(DeclaringStep).get_parameter("host")


def test_get_parameter_resolves_previous_step_data_and_lookup_data_first() -> None:
    step = make(BareStep, entry={"v": "${shared}|${b}"})

    assert step.get_parameter("v") == "from A|2"
    assert step.get_parameter("v", {"shared": "lookup"}) == "lookup|2"


def test_get_parameter_calls_step_functions() -> None:
    step = make(DeclaringStep, entry={"host": "${stepfunc.double ${a}}"})

    assert step.get_parameter("host") == 2


def test_get_parameter_reports_an_unknown_reference() -> None:
    with pytest.raises(SubstitutionError, match="'nothing'"):
        make(BareStep, entry={"v": "${nothing}"}).get_parameter("v")


def test_get_parameter_from_previous_step_reads_its_entry() -> None:
    assert make(BareStep).get_parameter_from_previous_step("limit", "A") == 5


def test_get_parameter_from_previous_step_refuses_an_unset_parameter() -> None:
    with pytest.raises(InvalidStepParameter, match="does not set parameter 'x'"):
        make(BareStep).get_parameter_from_previous_step("x", "A")


def test_get_parameter_from_previous_step_refuses_a_step_that_does_not_feed_this_one() -> None:
    with pytest.raises(DataNotAvailableException):
        make(BareStep).get_parameter_from_previous_step("limit", "Z")


def join(*data: Any, data_from: Any = None) -> Any:
    inputs = tuple(StepInput(f"S{index}", value) for index, value in enumerate(data))
    return make(BareStep, inputs=inputs).join_previous_step_data(data_from)


def test_join_of_one_input_returns_it_as_is() -> None:
    assert join("only") == "only"


def test_join_concatenates_lists() -> None:
    assert join([1], [2, 3]) == [1, 2, 3]


def test_join_merges_dicts_in_application_order() -> None:
    assert join({"a": 1, "k": 1}, {"k": 2}) == {"a": 1, "k": 2}


def test_join_gathers_other_values_of_one_type_in_a_list() -> None:
    assert join("x", "y") == ["x", "y"]


def test_join_of_no_input_is_an_empty_dict() -> None:
    assert join() == {}


def test_join_skips_inputs_that_saved_nothing() -> None:
    assert make(BareStep).join_previous_step_data() == {
        "a": 1, "b": 2, "shared": "from B",
    }


def test_join_refuses_mixed_types_naming_steps_and_types() -> None:
    with pytest.raises(IncompatibleDataException, match=r"'S0' \(list\), 'S1' \(dict\)"):
        join([1], {"a": 1})


def test_join_restricted_to_named_steps() -> None:
    assert join([1], [2], [3], data_from=["S2", "S0"]) == [3, 1]


def test_join_refuses_a_named_step_that_does_not_feed_this_one() -> None:
    with pytest.raises(DataNotAvailableException, match="'Z'"):
        join([1], data_from=["Z"])


def test_new_step_parameter_records_the_declaration() -> None:
    declared = current_context(make(DeclaringStep)).parameters

    assert declared["host"].required is True
    assert declared["host"].sample_value == "h"
    assert declared["flag"].required is False
    assert declared["port"].default_value == 443


def test_save_data_for_next_step_refuses_unsupported_data_at_once() -> None:
    step = make(BareStep)

    with pytest.raises(UnsupportedDataError, match="'object'"):
        step.save_data_for_next_step({"x": object()})

    assert current_context(step).saved is False


def test_saving_twice_replaces_the_data_and_later_changes_are_not_saved() -> None:
    step = make(BareStep)
    data = [1]

    step.save_data_for_next_step("first")
    step.save_data_for_next_step(data)
    data.append(2)

    assert current_context(step).saved_data == [1, 2]
    assert current_context(step).saved_bytes == b"\x91\x01"


def test_saving_none_is_still_saving() -> None:
    step = make(BareStep)

    step.save_data_for_next_step(None)

    assert current_context(step).saved is True


def test_validate_parameter_values_lists_every_missing_required_parameter() -> None:
    class TwoRequired(BareStep):
        def __init__(self) -> None:
            self.new_step_parameter(name="a", required=True)
            self.new_step_parameter(name="b", required=True)

    with pytest.raises(MissingRequiredStepParameter, match="parameters 'a', 'b'") as info:
        make(TwoRequired).validate_parameter_values()

    assert info.value.parameters == ("a", "b")


def test_validate_parameter_values_passes_when_required_ones_are_set() -> None:
    make(DeclaringStep, entry={"host": "h"}).validate_parameter_values()


def test_logger_records_every_level_and_calls_on_log() -> None:
    seen: list[LogRecord] = []
    step = make(BareStep, on_log=seen.append)

    step.logger.debug("d %s", 1)
    step.logger.info("i")
    step.logger.warning("w")
    step.logger.error("e")
    step.logger.critical("c")

    levels = [(r.level, r.message) for r in current_context(step).logs]
    assert levels == [("debug", "d 1"), ("info", "i"), ("warning", "w"), ("error", "e"),
                      ("critical", "c")]
    assert seen == current_context(step).logs


def test_logger_exception_appends_the_traceback() -> None:
    step = make(BareStep)

    try:
        raise ValueError("bad")
    except ValueError:
        step.logger.exception("failed")

    record = current_context(step).logs[0]
    assert record.level == "error"
    assert record.message.startswith("failed\nTraceback")
    assert "ValueError: bad" in record.message


def test_logger_keeps_arguments_that_do_not_fit_the_format() -> None:
    step = make(BareStep)

    step.logger.info("no placeholders", 5)

    assert current_context(step).logs[0].message == "no placeholders 5"


def test_base_execute_tells_the_author_to_define_it() -> None:
    class NoExecute(BaseStep):
        pass

    with pytest.raises(NotImplementedError, match="does not define execute"):
        NoExecute().execute()
