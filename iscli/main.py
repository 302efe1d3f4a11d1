"""Entry point of the ``iscli`` console script.

Parses the command line, resolves the connection, runs one command and
turns every failure into one line on stderr (plus a hint) and a documented
exit code (``iscli.errors``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable

from iscli import commands, output, progress, transfer
from iscli.client import GatewayClient
from iscli.completion import completion_script
from iscli.connection import resolve_connection
from iscli.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CredentialsMissingError,
    IscliError,
    UsageError,
)
from iscli.parser import build_parser

Handler = Callable[[argparse.Namespace, GatewayClient], int]
# Exit code after Ctrl-C, as shells report a SIGINT death.
EXIT_INTERRUPTED = 130
HANDLERS: dict[str, Handler] = {
    "list": commands.list_definitions,
    "get": commands.get_definition,
    "delete": commands.delete_definition,
    "upload": commands.upload,
    "logs": commands.show_logs,
    "tasks": commands.show_task,
    "revoke": commands.revoke,
    "run": progress.run_application,
    "replay": progress.replay,
    "export": transfer.export_pack,
    "import": transfer.import_pack,
}


def main(argv: list[str] | None = None) -> int:
    """Run iscli with ``argv`` (default: the process's); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_command(parser, args)
    except IscliError as error:
        report_error(error, as_json=bool(args.json))
        return error.exit_code
    except KeyboardInterrupt:
        output.err("iscli: interrupted.")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`iscli list steps | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception:  # main turns any bug into one report and an exit code.  # noqa: BLE001
        output.err(traceback.format_exc().rstrip())
        output.err(
            "iscli: error: an unexpected failure happened inside iscli; "
            "the traceback above says where."
        )
        return EXIT_ERROR


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Dispatch the parsed command line to its handler."""
    if args.command == "completion":
        output.raw(completion_script(args.shell))
        return EXIT_OK
    handler = HANDLERS.get(args.command) if args.command else _manual_form(args)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    connection = resolve_connection(
        host=args.host,
        port=args.port,
        user=args.username,
        password=args.password,
        token=args.token,
        insecure=bool(args.insecure),
    )
    if connection.password is None and connection.token is None:
        raise CredentialsMissingError(connection.user)
    with GatewayClient(connection) as client:
        return handler(args, client)


def _manual_form(args: argparse.Namespace) -> Handler | None:
    """The manual's flag-only form: ``-u [-s|-a|-c] -f PATH``, or ``-s`` to list."""
    if args.upload:
        return commands.upload
    if args.file_location:
        raise UsageError(
            f"Option -f {args.file_location!r} needs -u to upload it.",
            hint=f"For example: iscli -u -f {args.file_location}",
        )
    if args.kind:
        return commands.list_definitions
    return None


def report_error(error: IscliError, *, as_json: bool) -> None:
    """Write ``error`` as one line (plus a hint) on stderr; as JSON too with --json."""
    output.err(f"iscli: error: {error}")
    if error.hint:
        output.err(f"iscli: hint: {error.hint}")
    if as_json:
        output.out(
            json.dumps(
                {
                    "error": {
                        "code": error.code,
                        "message": str(error),
                        "hint": error.hint,
                        "exit_code": error.exit_code,
                    }
                }
            )
        )
