from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ipaascommon import ipaas_exceptions
from ipaascommon.json_utils import get_dict_from_ex_json_str
from iscore.runtime.execution import execute_step
from iscore.runtime.harness import StepRunner, SyncPackError, SyncPackStepRunner, run_step
from iscore.runtime.invocation import LogRecord, StepInvocation

pytest_plugins = ["pytester"]

SYNCPACKS = Path(__file__).parent / "fixtures" / "syncpacks"
PACK = "iscore_demo_pack"

FETCH = textwrap.dedent(
    """\
    from ipaascore.BaseStep import BaseStep
    from ipaascommon import ipaas_exceptions


    class Fetch(BaseStep):
        def __init__(self):
            self.friendly_name = "Fetch"
            self.new_step_parameter(name="host", required=True)

        def execute(self):
            host = self.get_parameter("host")
            self.logger.info("fetching from %s", host)
            if host == "down":
                raise ipaas_exceptions.StepFailedException("host is down")
            self.save_data_for_next_step({"host": host, "region": self.get_app_variable("r")})
    """
)


@pytest.fixture
def syncpack_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SYNCPACKS))


def test_execute_step_reports_step_code_failure_with_its_own_frames() -> None:
    invocation = StepInvocation(
        source=FETCH, file="Fetch", entry={"name": "f", "file": "Fetch", "host": "down"},
        app_variables={"r": "eu"},
    )

    outcome = execute_step(invocation)

    assert outcome.error_type == "StepFailedException"
    assert outcome.error == "host is down"
    assert 'File "Fetch.py", line 14, in execute' in (outcome.traceback or "")
    assert "raise ipaas_exceptions.StepFailedException" in (outcome.traceback or "")
    assert outcome.saved is False
    assert outcome.logs[0].message == "fetching from down"


def test_execute_step_fails_clearly_on_a_missing_required_parameter() -> None:
    invocation = StepInvocation(source=FETCH, file="Fetch", entry={"name": "f", "file": "Fetch"})

    outcome = execute_step(invocation)

    assert outcome.error_type == "MissingRequiredStepParameter"
    assert outcome.error == (
        "Step 'f' needs parameter 'host', which is not set; set it on the step in the application."
    )


def test_execute_step_reports_an_invalid_source_as_a_failure() -> None:
    invocation = StepInvocation(source="class X:\n", file="X", entry={"name": "x"})

    outcome = execute_step(invocation)

    assert outcome.error_type == "StepSourceError"


def test_execute_step_turns_sys_exit_in_step_code_into_a_failure() -> None:
    source = (
        "from ipaascore.BaseStep import BaseStep\n"
        "class Quit(BaseStep):\n"
        "    def execute(self):\n"
        "        raise SystemExit(3)\n"
    )

    outcome = execute_step(StepInvocation(source=source, file="Quit", entry={}))

    assert outcome.error_type == "SystemExit"
    assert outcome.error == "3"


def test_execute_step_streams_log_records_to_on_log() -> None:
    seen: list[LogRecord] = []
    invocation = StepInvocation(
        source=FETCH, file="Fetch", entry={"host": "h"}, app_variables={"r": "eu"}
    )

    outcome = execute_step(invocation, on_log=seen.append)

    assert outcome.succeeded
    assert seen == outcome.logs


def test_run_step_runs_source_with_parameters_and_variables() -> None:
    result = run_step(source=FETCH, file="Fetch", parameters={"host": "h1"},
                      app_variables={"r": "eu"})

    assert result.succeeded
    assert result.data == {"host": "h1", "region": "eu"}
    assert result.messages("info") == ["fetching from h1"]


def test_run_step_returns_the_step_exception_object() -> None:
    result = run_step(source=FETCH, file="Fetch", parameters={"host": "down"})

    assert isinstance(result.exception, ipaas_exceptions.StepFailedException)
    with pytest.raises(ipaas_exceptions.StepFailedException):
        result.raise_for_error()


def test_run_step_reads_a_step_file_path(tmp_path: Path) -> None:
    path = tmp_path / "Fetch.py"
    path.write_text(FETCH)

    result = run_step(path, parameters={"host": "h"}, app_variables={"r": 1})

    assert result.data == {"host": "h", "region": 1}


def test_run_step_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_step(tmp_path / "Nope.py")


def test_run_step_round_trips_input_data_through_the_codec() -> None:
    result = run_step(
        SYNCPACKS / PACK / "steps" / "DummyStep2.py",
        inputs={"a": [(1, 2)], "b": [{3}]},
    )

    assert result.data == [(1, 2), {3}]


def test_run_step_refuses_input_data_production_would_refuse() -> None:
    with pytest.raises(Exception, match="cannot be saved"):
        run_step(SYNCPACKS / PACK / "steps" / "DummyStep2.py", inputs={"a": object()})


def test_step_runner_fixture_runs_steps_with_shared_variables(step_runner: StepRunner) -> None:
    step_runner.app_variables["r"] = "us"

    result = step_runner.run(source=FETCH, file="Fetch", parameters={"host": "h"})

    assert result.data["region"] == "us"
    assert step_runner.last is result


def test_cookiecutter_dummy_step_saves_nothing(
    syncpack_path: None, syncpack_step_runner: SyncPackStepRunner
) -> None:
    data = syncpack_step_runner.run({"name": "ds", "file": "DummyStep", "syncpack": PACK})

    assert data is None
    assert syncpack_step_runner.last is not None
    assert syncpack_step_runner.last.saved is False


def test_cookiecutter_dummy_step2_joins_and_saves_previous_data(
    syncpack_path: None, syncpack_step_runner: SyncPackStepRunner
) -> None:
    syncpack_step_runner.data_in = {"one": {"a": 1}, "two": {"b": 2}}

    data = syncpack_step_runner.run(
        {"name": "ds1", "file": "DummyStep2", "syncpack": PACK, "some_param": "x"}
    )

    assert data == {"a": 1, "b": 2}
    assert syncpack_step_runner.last is not None
    assert syncpack_step_runner.last.messages("debug") == ["data in: {'a': 1, 'b': 2}"]


def test_syncpack_runner_raises_the_step_exception(
    syncpack_path: None, syncpack_step_runner: SyncPackStepRunner
) -> None:
    syncpack_step_runner.data_in = {"one": "fail"}

    with pytest.raises(ipaas_exceptions.StepFailedException, match="asked to fail"):
        syncpack_step_runner.run({"name": "ds1", "file": "DummyStep2", "syncpack": PACK})


def test_syncpack_runner_refuses_a_pack_that_cannot_be_imported() -> None:
    with pytest.raises(SyncPackError, match="cannot be imported"):
        SyncPackStepRunner().run({"file": "X", "syncpack": "no_such_pack_xyz"})


def test_syncpack_runner_refuses_a_missing_step_file(syncpack_path: None) -> None:
    with pytest.raises(SyncPackError, match="has no step file"):
        SyncPackStepRunner().run({"file": "Missing", "syncpack": PACK})


def test_syncpack_runner_refuses_an_entry_without_syncpack() -> None:
    with pytest.raises(SyncPackError, match="needs 'syncpack' and 'file'"):
        SyncPackStepRunner().run({"file": "DummyStep"})


def test_plugin_fixtures_work_in_a_fresh_pytest_session(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        f"""
        def test_pack(monkeypatch, syncpack_step_runner):
            monkeypatch.syspath_prepend({str(SYNCPACKS)!r})
            syncpack_step_runner.data_in = {{"p": [1], "q": [2]}}
            assert syncpack_step_runner.run(
                {{"name": "ds1", "file": "DummyStep2", "syncpack": {PACK!r}}}
            ) == [1, 2]
        """
    )

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


def test_json_utils_finds_an_object_inside_longer_text() -> None:
    assert get_dict_from_ex_json_str('HTTP 500: {"error": {"code": 7}} at noon') == {
        "error": {"code": 7}
    }


def test_json_utils_skips_braces_that_are_not_json() -> None:
    assert get_dict_from_ex_json_str(b'{oops} then {"a": [1]}') == {"a": [1]}


def test_json_utils_refuses_text_without_an_object() -> None:
    with pytest.raises(ipaas_exceptions.InvalidJsonException, match="holds no JSON object"):
        get_dict_from_ex_json_str("[1, 2] and nothing else")


def test_step_class_overriding_new_still_gets_the_run_context() -> None:
    source = (
        "from ipaascore.BaseStep import BaseStep\n"
        "class Odd(BaseStep):\n"
        "    def __new__(cls):\n"
        "        return object.__new__(cls)\n"
        "    def __init__(self):\n"
        "        pass\n"
        "    def execute(self):\n"
        "        self.save_data_for_next_step(self.get_parameter('p'))\n"
    )

    result = run_step(source=source, file="Odd", parameters={"p": 7})

    assert result.data == 7
