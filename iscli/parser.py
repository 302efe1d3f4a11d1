"""iscli's command line: the manual's flags plus subcommands.

The manual's form works exactly as written, flags grouped or not
(``iscli -usf step.py``, ``iscli -u -a -f app.json -H host -P 443 -U isadmin
-p secret``; MANUAL-NOTES 21). Subcommands (``list``, ``run`` ...) accept the
connection flags before or after their name.
"""

from __future__ import annotations

import argparse
from typing import Any

# Names accepted for each kind of definition on the command line.
KIND_ALIASES = {
    "step": "step",
    "steps": "step",
    "application": "application",
    "applications": "application",
    "app": "application",
    "apps": "application",
    "configuration": "configuration",
    "configurations": "configuration",
    "config": "configuration",
    "configs": "configuration",
    "schedule": "schedule",
    "schedules": "schedule",
}
KIND_CHOICES = ("steps", "applications", "configurations", "schedules")
SHELLS = ("bash", "zsh")
DESCRIPTION = (
    "Command line client of the Integration Service API. Upload steps, "
    "applications and configurations the way the manual shows "
    "(iscli -usf step.py), or use the subcommands below."
)
EPILOG = (
    "Host, port and credentials default from ISCLI_HOST, ISCLI_PORT, ISCLI_USER, "
    "ISCLI_PASSWORD, the config file ~/.config/iscli/config.toml (or ISCLI_CONFIG), "
    "then from a local `make up` system. Exit codes: 0 ok, 1 error, 2 usage, "
    "3 invalid local file, 4 not found, 5 authentication, 6 gateway unavailable, "
    "7 request refused, 8 run failed, 9 wait timed out."
)


def kind_name(value: str) -> str:
    """argparse type: a kind alias (``apps``, ``config`` ...) to its canonical name."""
    try:
        return KIND_ALIASES[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a kind of definition; use one of {', '.join(KIND_CHOICES)}"
        ) from None


def _connection_flags(parser: argparse.ArgumentParser, *, default: Any) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "-H",
        "--host",
        default=default,
        help="gateway host name, IP address or URL (default from config)",
    )
    group.add_argument(
        "-P",
        "--port",
        type=int,
        default=default,
        help="gateway HTTP port; 443 implies https (default from config)",
    )
    group.add_argument("-U", "--username", default=default, help="user name (default isadmin)")
    group.add_argument("-p", "--password", default=default, help="password (default from config)")
    group.add_argument(
        "--token", default=default, help="API token to send instead of a password (POST /tokens)"
    )
    group.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        default=default,
        help="do not verify the gateway's TLS certificate",
    )
    group.add_argument(
        "--json", action="store_true", default=default, help="write JSON to stdout, for scripts"
    )


def build_parser() -> argparse.ArgumentParser:
    """The full parser; ``main`` and the completion scripts both read it."""
    parser = argparse.ArgumentParser(prog="iscli", description=DESCRIPTION, epilog=EPILOG)
    _connection_flags(parser, default=None)
    manual = parser.add_argument_group("manual flags")
    manual.add_argument(
        "-u", "--upload", action="store_true", help="upload the file or directory given with -f"
    )
    manual.add_argument(
        "-f",
        "--fileLocation",
        dest="file_location",
        metavar="PATH",
        help="a step, application or configuration file, or a directory of them",
    )
    kinds = manual.add_mutually_exclusive_group()
    kinds.add_argument(
        "-s", "--step", dest="kind", action="store_const", const="step", help="work with steps"
    )
    kinds.add_argument(
        "-a",
        "--application",
        dest="kind",
        action="store_const",
        const="application",
        help="work with applications",
    )
    kinds.add_argument(
        "-c",
        "--configuration",
        dest="kind",
        action="store_const",
        const="configuration",
        help="work with configurations",
    )

    common = argparse.ArgumentParser(add_help=False)
    _connection_flags(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _definition_commands(commands, common)
    _run_commands(commands, common)
    _pack_commands(commands, common)
    completion = commands.add_parser(
        "completion", parents=[common], help="print a shell completion script"
    )
    completion.add_argument("shell", choices=SHELLS)
    return parser


def _definition_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    listing = commands.add_parser(
        "list", parents=[common], help="list steps, applications, configurations or schedules"
    )
    listing.add_argument(
        "kind", type=kind_name, metavar="KIND", help=f"one of {', '.join(KIND_CHOICES)}"
    )

    get = commands.add_parser("get", parents=[common], help="show one definition")
    get.add_argument("kind", type=kind_name, metavar="KIND")
    get.add_argument("name", help="its name (a schedule's id or entry_id)")
    get.add_argument("--version", type=int, help="an older version of a step or application")

    delete = commands.add_parser("delete", parents=[common], help="delete one definition")
    delete.add_argument("kind", type=kind_name, metavar="KIND")
    delete.add_argument("name", help="its name (a schedule's id)")

    upload = commands.add_parser(
        "upload", parents=[common], help="upload files or directories of definitions"
    )
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument(
        "--kind",
        type=kind_name,
        default=argparse.SUPPRESS,
        help="treat every file as this kind (default: by suffix and content)",
    )


def _run_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    run = commands.add_parser("run", parents=[common], help="run an application")
    run.add_argument("application", metavar="APPLICATION")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run parameter; VALUE is JSON if it parses, else text (repeatable)",
    )
    run.add_argument("--queue", help="queue to run on (params.queue)")
    run.add_argument(
        "--configuration",
        dest="run_configuration",
        help="configuration to use (params.configuration)",
    )
    _wait_flags(run)

    logs = commands.add_parser(
        "logs", parents=[common], help="status and step logs of an application's latest run"
    )
    logs.add_argument("application", metavar="APPLICATION")

    tasks = commands.add_parser(
        "tasks", parents=[common], help="status of a run (isapp-...) or of one step task, with logs"
    )
    tasks.add_argument("task_id", metavar="TASK_ID")

    revoke = commands.add_parser("revoke", parents=[common], help="revoke a run or one step task")
    revoke.add_argument("task_id", metavar="TASK_ID")

    replay = commands.add_parser(
        "replay", parents=[common], help="run an earlier run again with its variables and queue"
    )
    replay.add_argument("task_id", metavar="TASK_ID")
    _wait_flags(replay)


def _wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="show the steps' progress and wait for the run to end"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --wait: give up after this many seconds (default: never)",
    )


def _pack_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    export = commands.add_parser(
        "export",
        parents=[common],
        help="write definitions to a content pack (directory, .zip or .tar.gz)",
    )
    export.add_argument("destination", metavar="PATH")
    export.add_argument(
        "--application",
        dest="applications",
        action="append",
        default=[],
        metavar="NAME",
        help="only this application with its steps, configuration and "
        "schedules (repeatable; default: everything)",
    )
    export.add_argument("--name", help="pack name written to meta.json")
    export.add_argument("--pack-version", default="1.0.0", help="pack version for meta.json")

    imp = commands.add_parser(
        "import",
        parents=[common],
        help="show what a content pack or SyncPack changes, then apply it",
    )
    imp.add_argument("source", metavar="PATH")
    imp.add_argument("--dry-run", action="store_true", help="show the changes; apply nothing")
