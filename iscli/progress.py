"""Starting runs and following them: ``iscli run``, ``iscli replay``.

With ``--wait`` iscli polls GET /tasks/{run id} and prints each step's
state changes (running, retrying, succeeded, failed) until the run ends;
a run that ends in FAILURE or REVOKED exits with ``EXIT_RUN_FAILED``.
Polling is fine here: a CLI watching a status page, not a test waiting.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from iscli import output
from iscli.client import GatewayClient
from iscli.errors import EXIT_OK, RunFailedError, UsageError, WaitTimeoutError

# Seconds between two status reads while following a run.
POLL_INTERVAL_S = 0.25
FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
FAILED_STATES = frozenset({"FAILURE", "REVOKED"})
# How each state reads in progress lines.
STATE_WORDS = {
    "PENDING": "pending",
    "STARTED": "running",
    "RETRY": "retrying",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "revoked",
}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs to run parameters; VALUE is JSON when it parses."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(
                f"Parameter {pair!r} is not NAME=VALUE.",
                hint="For example: --param region=emea --param limit=10",
            )
        try:
            params[name] = json.loads(text)
        except ValueError:
            params[name] = text
    return params


def run_application(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli run APPLICATION``: start a run, optionally follow it to its end."""
    params = parse_params(args.param)
    if args.queue:
        params["queue"] = args.queue
    if args.run_configuration:
        params["configuration"] = args.run_configuration
    run = client.post(f"/applications/{args.application}/run", {"params": params})
    return _report(args, client, run, verb="Started")


def replay(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli replay TASK_ID``: run an earlier run again (POST /tasks/{id}/replay)."""
    run = client.post(f"/tasks/{args.task_id}/replay")
    return _report(args, client, run, verb="Replayed as")


def _report(
    args: argparse.Namespace, client: GatewayClient, run: dict[str, Any], *, verb: str
) -> int:
    run_id = run["id"]
    if not args.wait:
        if args.json:
            output.emit_json(run)
        else:
            output.out(
                f"{verb} run {run_id} of application {run.get('app_name')!r} ({run.get('state')})."
            )
            output.out(f"Follow it with: iscli tasks {run_id}")
        return EXIT_OK

    say = output.err if args.json else output.out
    say(f"{verb} run {run_id} of application {run.get('app_name')!r}.")
    final = follow_run(client, run, timeout_s=args.timeout, say=say)
    if args.json:
        output.emit_json(final)
    if final["state"] in FAILED_STATES:
        raise RunFailedError(_failure_summary(final), run_id=run_id, state=final["state"])
    return EXIT_OK


def _failure_summary(run: dict[str, Any]) -> str:
    # Steps skipped because a step they depend on failed say "Not run: ...".
    failed = [
        repr(s.get("name"))
        for s in run.get("steps", [])
        if s.get("state") in FAILED_STATES and not str(s.get("error")).startswith("Not run")
    ]
    reason = run.get("error") or (f"step {', '.join(failed)} failed" if failed else "")
    return f"Run {run['id']} ended {run['state']}" + (f": {reason}." if reason else ".")


def follow_run(
    client: GatewayClient, run: dict[str, Any], *, timeout_s: float | None, say: Any
) -> dict[str, Any]:
    """Poll the run until it is final, printing every step state change."""
    run_id = run["id"]
    started = time.monotonic()
    seen: dict[str, tuple[str, Any]] = {}
    while True:
        elapsed = time.monotonic() - started
        for line in step_changes(run, seen):
            say(f"[{elapsed:6.1f}s] {line}")
        if run.get("state") in FINAL_STATES:
            say(f"[{elapsed:6.1f}s] run {run_id} {run['state']}")
            return run
        if timeout_s is not None and elapsed >= timeout_s:
            raise WaitTimeoutError(
                f"Run {run_id} is still {run.get('state')} after {timeout_s:g} s.", run_id=run_id
            )
        time.sleep(POLL_INTERVAL_S)
        run = client.get(f"/tasks/{run_id}")


def step_changes(run: dict[str, Any], seen: dict[str, tuple[str, Any]]) -> list[str]:
    """Lines for steps whose state or attempt changed since ``seen``; updates it."""
    lines = []
    for step in run.get("steps", []):
        name, state, attempt = step.get("name"), step.get("state"), step.get("attempt")
        before, seen[name] = seen.get(name), (state, attempt)
        if before == (state, attempt) or state == "PENDING":
            continue
        lines.append(_step_line(step))
    return lines


def _step_line(step: dict[str, Any]) -> str:
    state = str(step.get("state"))
    line = f"step {step.get('name')!r} {STATE_WORDS.get(state, state.lower())}"
    attempt = step.get("attempt")
    if isinstance(attempt, int) and attempt > 1:
        line += f" (attempt {attempt})"
    if state in FAILED_STATES and step.get("error"):
        line += f": {step['error']}"
    return line
