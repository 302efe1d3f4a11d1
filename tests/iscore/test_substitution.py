from __future__ import annotations

from typing import Any

import pytest

from iscore.errors import IscoreError
from iscore.substitution import SubstitutionError, SubstitutionScope, substitute


class Functions:
    def add_numbers(self, a: str, b: str) -> int:
        return int(a) + int(b)

    def echo(self, *args: Any) -> tuple[Any, ...]:
        return args

    def _hidden(self) -> str:
        return "secret"


SCOPE = SubstitutionScope(
    data=[
        ("lookup_data", {"device": "router-1"}),
        ("data of step 'A'", {"count": 3, "device": "ignored", "nested": {"ip": "10.0.0.1"}}),
        ("data of step 'B'", {"rows": [1, 2]}),
    ],
    configuration={"host": "sl1.example", "port": 443, "env": "prod", "prod_host": "p.example"},
    app_variables={"region": "eu", "limit": 10},
    step=Functions(),
)


def sub(value: Any) -> Any:
    return substitute(value, scope=SCOPE)


def test_plain_text_is_unchanged() -> None:
    assert sub("no references here") == "no references here"


def test_previous_step_data_name_resolves() -> None:
    assert sub("${rows}") == [1, 2]


def test_lookup_data_takes_precedence_over_previous_step_data() -> None:
    assert sub("${device}") == "router-1"


def test_dotted_name_walks_nested_dicts() -> None:
    assert sub("${nested.ip}") == "10.0.0.1"


def test_config_reference_resolves_from_configuration() -> None:
    assert sub("https://${config.host}:${config.port}/api") == "https://sl1.example:443/api"


def test_appvar_reference_resolves_from_application_variables() -> None:
    assert sub("${appvar.region}") == "eu"


def test_exact_reference_keeps_the_resolved_type() -> None:
    assert sub("${config.port}") == 443
    assert sub("${appvar.limit}") == 10


def test_reference_inside_text_is_rendered_as_text() -> None:
    assert sub("limit=${appvar.limit}") == "limit=10"


def test_stepfunc_calls_a_step_method_with_space_separated_arguments() -> None:
    assert sub("${stepfunc.add_numbers 1 2}") == 3


def test_step_func_spelling_is_accepted() -> None:
    assert sub("${step_func.add_numbers 1 2}") == 3


def test_stepfunc_arguments_may_be_substitutions_keeping_their_type() -> None:
    assert sub("${stepfunc.echo ${config.port} x${appvar.region}}") == (443, "xeu")


def test_nested_reference_builds_a_name() -> None:
    assert sub("${config.${config.env}_host}") == "p.example"


def test_dollar_dollar_brace_writes_a_literal_reference() -> None:
    assert sub("cost $${config.host} and $5") == "cost ${config.host} and $5"


def test_dicts_and_lists_are_substituted_recursively_leaving_keys() -> None:
    value = {"${config.host}": ["${appvar.region}", {"n": "${config.port}"}], "k": 7}

    assert sub(value) == {"${config.host}": ["eu", {"n": 443}], "k": 7}


def test_resolved_values_are_not_scanned_again() -> None:
    scope = SubstitutionScope(data=[("d", {"evil": "${config.password}"})], configuration={})

    assert substitute("${evil}", scope=scope) == "${config.password}"


def test_unknown_data_name_is_an_error_naming_it_and_the_sources() -> None:
    with pytest.raises(SubstitutionError) as info:
        sub("${missing}")

    assert info.value.name == "missing"
    assert "'missing'" in str(info.value)
    assert "data of step 'A'" in str(info.value)
    assert isinstance(info.value, IscoreError)


def test_unknown_config_name_is_an_error_naming_the_configuration() -> None:
    with pytest.raises(SubstitutionError, match="the run's configuration") as info:
        sub("x ${config.nope}")

    assert info.value.name == "config.nope"


def test_unknown_appvar_name_is_an_error() -> None:
    with pytest.raises(SubstitutionError, match="application variables"):
        sub("${appvar.nope}")


def test_unknown_step_function_is_an_error() -> None:
    with pytest.raises(SubstitutionError, match="not a method of the current step"):
        sub("${stepfunc.nope 1}")


def test_stepfunc_without_a_step_is_an_error() -> None:
    with pytest.raises(SubstitutionError, match="not a method"):
        substitute("${stepfunc.add_numbers 1 2}", scope=SubstitutionScope())


@pytest.mark.parametrize(
    "text",
    [
        "${config.__class__}",
        "${appvar._private}",
        "${stepfunc.__init__}",
        "${step_func._hidden}",
        "${stepfunc.__class__.__init__ x}",
        "${config.a.__dict__}",
    ],
)
def test_private_and_dunder_names_are_refused(text: str) -> None:
    with pytest.raises(SubstitutionError, match="start with '_' are refused"):
        sub(text)


@pytest.mark.parametrize("text", ["{0.__class__}", "{{7*7}}", "%(x)s {x!r}", "$x $ {y}"])
def test_format_style_injection_is_left_as_text(text: str) -> None:
    assert sub(text) == text


def test_dunder_data_name_is_only_a_missing_key() -> None:
    with pytest.raises(SubstitutionError, match="is not defined"):
        sub("${__class__}")


def test_unclosed_reference_is_an_error_suggesting_the_escape() -> None:
    with pytest.raises(SubstitutionError, match=r"without a closing '\}'.*'\$\$\{'"):
        sub("abc ${config.host")


def test_empty_reference_is_an_error() -> None:
    with pytest.raises(SubstitutionError, match="empty"):
        sub("${ }")


def test_excessive_nesting_is_refused() -> None:
    text = "${" * 40 + "x" + "}" * 40

    with pytest.raises(SubstitutionError, match="nests"):
        sub(text)


def test_non_text_values_come_back_unchanged() -> None:
    assert sub(5) == 5
    assert sub(None) is None
    assert sub(("${appvar.region}", 1)) == ("eu", 1)
