"""The manual's flags, grouped or not, and the subcommands."""

from __future__ import annotations

import subprocess

import pytest

from iscli.completion import completion_script
from iscli.parser import build_parser


def test_grouped_manual_flags_upload_a_step() -> None:
    args = build_parser().parse_args(["-usf", "step.py"])

    assert (args.upload, args.kind, args.file_location, args.command) == (
        True,
        "step",
        "step.py",
        None,
    )


@pytest.mark.parametrize(
    ("flag", "kind"), [("-a", "application"), ("-c", "configuration"), ("-s", "step")]
)
def test_separate_manual_flags_with_connection_options(flag: str, kind: str) -> None:
    argv = [
        "-u",
        flag,
        "-f",
        "file.json",
        "-H",
        "is.example.com",
        "-P",
        "443",
        "-U",
        "isadmin",
        "-p",
        "secret",
    ]

    args = build_parser().parse_args(argv)

    assert (args.upload, args.kind, args.file_location) == (True, kind, "file.json")
    assert (args.host, args.port, args.username, args.password) == (
        "is.example.com",
        443,
        "isadmin",
        "secret",
    )


def test_connection_flags_work_after_a_subcommand() -> None:
    args = build_parser().parse_args(["list", "apps", "-H", "h", "-P", "81", "--json"])

    assert (args.command, args.kind, args.host, args.port, args.json) == (
        "list",
        "application",
        "h",
        81,
        True,
    )


def test_connection_flags_before_a_subcommand_are_kept() -> None:
    args = build_parser().parse_args(["-p", "pw", "run", "my_app", "--param", "a=1"])

    assert (args.password, args.application, args.param) == ("pw", "my_app", ["a=1"])


def test_run_configuration_option_does_not_clash_with_the_manual_c_flag() -> None:
    args = build_parser().parse_args(["run", "my_app", "--configuration", "prod", "--wait"])

    assert (args.run_configuration, args.kind, args.wait) == ("prod", None, True)


def test_unknown_kind_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["list", "widgets"])

    assert exit_info.value.code == 2
    assert "'widgets' is not a kind of definition" in capsys.readouterr().err


def test_bash_completion_script_completes_subcommands_and_kinds() -> None:
    script = completion_script("bash")
    probe = script + (
        '\nCOMP_WORDS=(iscli list ap); COMP_CWORD=2; _iscli; echo "${COMPREPLY[@]}"'
        '\nCOMP_WORDS=(iscli re); COMP_CWORD=1; _iscli; echo "${COMPREPLY[@]}"\n'
    )

    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)

    assert result.stdout.splitlines() == ["applications", "revoke replay"]


def test_zsh_completion_loads_bash_compatibility_first() -> None:
    assert completion_script("zsh").startswith("autoload -U +X bashcompinit")
