"""Subcommands that read and change definitions, and look at tasks.

Each handler takes the parsed arguments and a ``GatewayClient``, writes its
output (plain text, or one JSON document with ``--json``) and returns the
exit code. Errors are raised, never printed here; ``main`` reports them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iscli import output
from iscli.client import GatewayClient
from iscli.definition import API_PATHS, Definition, collect
from iscli.errors import EXIT_OK, ApiError, UsageError
from iscli.output import emit_json, out

# Page size used to read whole lists (the gateway caps `limit` at 1000).
PAGE_SIZE = 1000
# Columns of `iscli list KIND`: header and key in the gateway's documents.
LIST_COLUMNS = {
    "step": [
        ("NAME", "name"),
        ("VERSION", "version"),
        ("STEP VERSION", "step_version"),
        ("UPLOADED", "created_at"),
    ],
    "application": [
        ("NAME", "name"),
        ("VERSION", "_version"),
        ("QUEUE", "queue"),
        ("CONFIGURATION", "configuration"),
        ("UPDATED", "_updated_at"),
    ],
    "configuration": [
        ("NAME", "name"),
        ("VERSION", "_version"),
        ("FRIENDLY NAME", "friendly_name"),
    ],
    "schedule": [
        ("ID", "id"),
        ("ENTRY", "entry_id"),
        ("APPLICATION", "application_id"),
        ("WHEN", "when"),
        ("ENABLED", "enabled"),
    ],
}
# Server fields that are bookkeeping, not part of a definition. Schedules
# carry the scheduler's counters, and their `id` repeats `entry_id`.
SERVER_KEYS = frozenset({"_version", "_updated_at"})
SCHEDULE_SERVER_KEYS = frozenset(
    {
        "id",
        "revision",
        "created_at",
        "updated_at",
        "next_fire_at",
        "last_fire_at",
        "fire_count",
        "late_count",
        "skipped_count",
    }
)


def list_all(client: GatewayClient, kind: str) -> list[dict[str, Any]]:
    """Every definition of ``kind``, reading page after page."""
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(API_PATHS[kind], offset=len(items), limit=PAGE_SIZE)
        items.extend(page)
        if len(page) < PAGE_SIZE:
            return items


def strip_server_keys(document: dict[str, Any], kind: str) -> dict[str, Any]:
    """A definition of ``kind`` as uploaded: the gateway's bookkeeping removed."""
    drop = SCHEDULE_SERVER_KEYS if kind == "schedule" else SERVER_KEYS
    return {k: v for k, v in document.items() if k not in drop}


def list_definitions(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli list KIND`` (and the manual's ``iscli -s`` without ``-u``)."""
    items = list_all(client, args.kind)
    if args.json:
        emit_json(items)
        return EXIT_OK
    if args.kind == "schedule":
        items = [{**item, "when": _schedule_when(item)} for item in items]
    output.table(items, LIST_COLUMNS[args.kind])
    return EXIT_OK


def _schedule_when(item: dict[str, Any]) -> str:
    spec = item.get("schedule") or {}
    info = spec.get("schedule_info") or {}
    if spec.get("schedule_type") == "frequency":
        return f"every {info.get('run_every')} s"
    fields = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    return "cron " + " ".join(str(info.get(f, "*")) for f in fields)


def _add_list_hint(error: ApiError, kind: str) -> None:
    if error.status == 404 and error.hint is None:
        error.hint = f"See which exist with: iscli list {kind}s"


def get_definition(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli get KIND NAME``: a step prints its source, others their JSON."""
    try:
        document = client.get(f"{API_PATHS[args.kind]}/{args.name}", version=args.version)
    except ApiError as err:
        _add_list_hint(err, args.kind)
        raise
    if args.json or args.kind != "step":
        emit_json(document)
    else:
        output.raw(document["data"])
    return EXIT_OK


def delete_definition(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli delete KIND NAME``."""
    try:
        answer = client.delete(f"{API_PATHS[args.kind]}/{args.name}")
    except ApiError as err:
        _add_list_hint(err, args.kind)
        raise
    if args.json:
        emit_json(answer)
    else:
        out(f"Deleted {args.kind} {args.name!r}.")
    return EXIT_OK


def upload(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli upload PATH...`` and the manual's ``iscli -u -s|-a|-c -f PATH``."""
    paths = args.paths if args.command == "upload" else [args.file_location]
    if not paths or paths == [None]:
        raise UsageError(
            "Option -u needs -f with a file or directory to upload.",
            hint="For example: iscli -usf my_step.py",
        )
    kind = getattr(args, "kind", None)
    definitions = [d for path in paths for d in collect(Path(path), kind)]
    answers = [upload_definition(client, d) for d in definitions]
    if args.json:
        emit_json(answers)
        return EXIT_OK
    for definition, answer in zip(definitions, answers, strict=True):
        version = answer.get("version", answer.get("_version")) if answer else None
        suffix = f" (version {version})" if version is not None else ""
        out(f"Uploaded {definition.kind} {definition.name!r} from {definition.path}{suffix}.")
    return EXIT_OK


def upload_definition(client: GatewayClient, definition: Definition) -> Any:
    """POST one definition to its collection; return the gateway's answer."""
    return client.post(API_PATHS[definition.kind], definition.body)


def show_logs(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli logs APPLICATION``: the latest run and each step's log lines."""
    run = client.get(f"/applications/{args.application}/logs")
    steps = [client.get(f"/tasks/{s['id']}") for s in run.get("steps", []) if s.get("id")]
    if args.json:
        emit_json({**run, "step_tasks": steps})
        return EXIT_OK
    _print_run(run)
    for step in steps:
        out()
        _print_task(step)
    return EXIT_OK


def show_task(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli tasks TASK_ID``: a run (``isapp-...``) or one step task."""
    document = client.get(f"/tasks/{args.task_id}")
    if args.json:
        emit_json(document)
    elif "steps" in document:
        _print_run(document)
    else:
        _print_task(document)
    return EXIT_OK


def revoke(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli revoke TASK_ID``: stop a run or one step task."""
    answer = client.post(f"/tasks/{args.task_id}/revoke")
    if args.json:
        emit_json(answer)
    else:
        state = answer.get("state") if isinstance(answer, dict) else None
        out(f"Revoked {args.task_id}" + (f"; it is now {state}." if state else "."))
    return EXIT_OK


def _print_run(run: dict[str, Any]) -> None:
    out(f"Run {run.get('id')} of application {run.get('app_name')!r}: {run.get('state')}")
    if run.get("error"):
        out(f"  error: {run['error']}")
    rows = list(_step_rows(run.get("steps", [])))
    if rows:
        output.table(
            rows, [("STEP", "name"), ("STATE", "state"), ("ATTEMPT", "attempt"), ("TASK ID", "id")]
        )


def _step_rows(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for step in steps:
        yield {
            "name": step.get("name"),
            "state": step.get("state"),
            "attempt": step.get("attempt"),
            "id": step.get("id"),
        }


def _print_task(task: dict[str, Any]) -> None:
    out(
        f"Step {task.get('name')!r} (task {task.get('id')}): {task.get('state')}, "
        f"attempt {task.get('attempt')}, worker {task.get('worker') or '-'}"
    )
    for line in task.get("logs") or []:
        out(f"  {line.get('at', '')} {line.get('level', '')} {line.get('message', '')}")
    if task.get("error"):
        out(f"  error: {task['error']}")
    if task.get("traceback"):
        out("  " + str(task["traceback"]).rstrip().replace("\n", "\n  "))
    result = task.get("result")
    if isinstance(result, dict) and "data" in result:
        out(f"  result ({result.get('size_bytes')} bytes): {output.compact(result['data'])}")
