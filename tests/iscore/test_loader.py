from __future__ import annotations

import sys
import textwrap

import pytest

from iscore.errors import IscoreError
from iscore.runtime.basestep import BaseStep
from iscore.runtime.loader import StepSourceError, check_step_source, inspect_step, load_step_class

GOOD = textwrap.dedent(
    """\
    from ipaascore.BaseStep import BaseStep


    class Good(BaseStep):
        def __init__(self):
            self.friendly_name = "Good step"
            self.description = "Does good"
            self.version = 1.5
            self.new_step_parameter(name="host", description="h", sample_value="x",
                                    required=True)

        def execute(self):
            pass
    """
)


def test_a_valid_step_passes_the_check() -> None:
    check_step_source(GOOD, "Good")


def test_source_that_does_not_compile_is_refused_with_its_line() -> None:
    source = "from ipaascore.BaseStep import BaseStep\n\nclass Bad(BaseStep):\n"
    source += "    def execute(self)\n"

    with pytest.raises(StepSourceError, match="does not compile") as info:
        check_step_source(source, "Bad")

    assert info.value.line == 4
    assert info.value.file == "Bad"
    assert isinstance(info.value, IscoreError)


def test_missing_class_is_refused_naming_file_and_expected_class() -> None:
    source = "from ipaascore.BaseStep import BaseStep\n\n\nclass Other(BaseStep):\n    pass\n"

    with pytest.raises(StepSourceError, match="none named 'Wanted'") as info:
        check_step_source(source, "Wanted")

    assert info.value.line == 4


def test_file_without_any_class_is_refused_without_a_line() -> None:
    with pytest.raises(StepSourceError, match="defines no class") as info:
        check_step_source("x = 1\n", "Empty")

    assert info.value.line is None


def test_class_not_subclassing_basestep_is_refused_with_its_line() -> None:
    source = "import os\n\nclass Plain(object):\n    def execute(self):\n        pass\n"

    with pytest.raises(StepSourceError, match="does not subclass BaseStep") as info:
        check_step_source(source, "Plain")

    assert info.value.line == 3


def test_class_without_execute_is_refused_with_its_line() -> None:
    source = "from ipaascore.BaseStep import BaseStep\nclass Idle(BaseStep):\n    pass\n"

    with pytest.raises(StepSourceError, match="no execute method") as info:
        check_step_source(source, "Idle")

    assert info.value.line == 2


@pytest.mark.parametrize(
    "base", ["ipaascore.BaseStep.BaseStep", "BaseStep.BaseStep", "SL1BaseStep"]
)
def test_other_spellings_of_basestep_are_accepted(base: str) -> None:
    source = f"class Step({base}):\n    def execute(self):\n        pass\n"

    check_step_source(source, "Step")


def test_execute_inherited_from_a_class_in_the_same_file_is_accepted() -> None:
    source = textwrap.dedent(
        """\
        from ipaascore.BaseStep import BaseStep
        class Common(BaseStep):
            def execute(self):
                pass
        class Child(Common):
            pass
        """
    )

    check_step_source(source, "Child")


def test_a_file_name_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(StepSourceError, match="not a Python identifier"):
        check_step_source(GOOD, "my-step")


def test_load_step_class_returns_the_class_and_leaves_sys_modules_clean() -> None:
    step_class = load_step_class(GOOD, "Good")

    assert issubclass(step_class, BaseStep)
    assert step_class.__module__ == "isstep_Good"
    assert "isstep_Good" not in sys.modules


def test_load_step_class_lets_errors_of_the_module_body_through() -> None:
    source = "import no_such_module_xyz\n" + GOOD.replace("class Good", "class Broken")

    with pytest.raises(ModuleNotFoundError):
        load_step_class(source, "Broken")


def test_load_step_class_refuses_a_rebound_class_name() -> None:
    source = GOOD + "\nGood = 5\n"

    with pytest.raises(StepSourceError, match="do not rebind"):
        load_step_class(source, "Good")


def test_load_step_class_supports_dataclasses_in_step_code() -> None:
    source = "from dataclasses import dataclass\n\n@dataclass\nclass Row:\n    a: int\n\n" + GOOD

    assert load_step_class(source, "Good") is not None


def test_inspect_step_returns_names_version_and_parameters() -> None:
    metadata = inspect_step(GOOD, "Good")

    assert metadata.file == "Good"
    assert metadata.friendly_name == "Good step"
    assert metadata.description == "Does good"
    assert metadata.version == "1.5"
    assert metadata.parameter("host") is not None
    assert metadata.parameters[0].required is True


def test_inspect_step_works_for_an_init_that_only_passes() -> None:
    source = textwrap.dedent(
        """\
        from ipaascore.BaseStep import BaseStep
        class Quiet(BaseStep):
            def __init__(self):
                pass

            def execute(self):
                pass
        """
    )

    metadata = inspect_step(source, "Quiet")

    assert metadata.friendly_name == ""
    assert metadata.parameters == ()
