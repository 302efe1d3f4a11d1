"""``iscli export`` and ``iscli import``: content packs to and from a gateway.

Export reads definitions over the API and writes a pack (see ``pack.py``)
whose meta.json records each definition's version on the source system.
Import reads and checks the whole pack first, compares it with what the
gateway holds, prints the plan (add, change, unchanged) and then applies
it, steps first and schedules last.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iscli import output
from iscli.client import GatewayClient
from iscli.commands import list_all, strip_server_keys, upload_definition
from iscli.definition import Definition
from iscli.errors import EXIT_OK
from iscli.pack import MANIFEST_FORMAT, Pack, read_pack, write_pack

# Plan actions, in the words import prints.
ADD, CHANGE, UNCHANGED = "add", "change", "unchanged"


@dataclass(frozen=True, slots=True)
class Change:
    """What importing one definition does to the gateway."""

    action: str
    definition: Definition
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The change as ``--json`` prints it."""
        return {
            "action": self.action,
            "kind": self.definition.kind,
            "name": self.definition.name,
            "detail": self.detail,
        }


# Export ------------------------------------------------------------------


def export_pack(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli export PATH``: write the gateway's definitions to a pack."""
    pack = collect_pack(client, applications=args.applications)
    manifest = _manifest(pack, client)
    # Versions belong to the source system: they go into the manifest and
    # out of the definition files, so an import compares content only.
    pack.applications = {
        n: strip_server_keys(d, "application") for n, d in pack.applications.items()
    }
    pack.configurations = {
        n: strip_server_keys(d, "configuration") for n, d in pack.configurations.items()
    }
    pack.meta = {
        "name": args.name or Path(args.destination).name.split(".")[0] or "export",
        "version": args.pack_version,
        "description": f"Exported by iscli from {client.connection.base_url}.",
        "schedules": pack.schedules,
        "iscli": manifest,
    }
    write_pack(pack, Path(args.destination))
    counts = _counts(pack)
    if args.json:
        output.emit_json(
            {"destination": args.destination, "counts": counts, "manifest": pack.meta["iscli"]}
        )
    else:
        listed = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        output.out(f"Exported {listed} to {args.destination}.")
    return EXIT_OK


def collect_pack(client: GatewayClient, *, applications: list[str]) -> Pack:
    """Read definitions; ``applications`` narrows to those and what they use."""
    pack = Pack()
    if applications:
        apps = [client.get(f"/applications/{name}") for name in applications]
    else:
        apps = list_all(client, "application")
    pack.applications = {a["name"]: a for a in apps}
    wanted_steps = {s.get("file") for a in apps for s in a.get("steps", [])}
    wanted_configs = {a.get("configuration") for a in apps if a.get("configuration")}

    for step in list_all(client, "step"):
        if applications and step["name"] not in wanted_steps:
            continue
        pack.steps[step["name"]] = client.get(f"/steps/{step['name']}")["data"]
        pack.versions[("step", step["name"])] = step["version"]
    for configuration in list_all(client, "configuration"):
        if not applications or configuration["name"] in wanted_configs:
            pack.configurations[configuration["name"]] = configuration
    pack.schedules = [
        strip_server_keys(s, "schedule")
        for s in list_all(client, "schedule")
        if not applications or s.get("application_id") in pack.applications
    ]
    return pack


def _manifest(pack: Pack, client: GatewayClient) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": client.connection.base_url,
        "steps": {
            name: {"version": pack.versions.get(("step", name)), "sha256": _sha256(source)}
            for name, source in pack.steps.items()
        },
        "applications": {
            n: {"version": d.get("_version"), "app_version": d.get("version")}
            for n, d in pack.applications.items()
        },
        "configurations": {
            n: {"version": d.get("_version")} for n, d in pack.configurations.items()
        },
    }


def _counts(pack: Pack) -> dict[str, int]:
    return {
        "steps": len(pack.steps),
        "applications": len(pack.applications),
        "configurations": len(pack.configurations),
        "schedules": len(pack.schedules),
    }


def _sha256(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


# Import ------------------------------------------------------------------


def import_pack(args: argparse.Namespace, client: GatewayClient) -> int:
    """``iscli import PATH``: show what the pack changes, then apply it."""
    pack = read_pack(Path(args.source))
    changes = plan_import(client, pack)
    pending = [c for c in changes if c.action != UNCHANGED]
    say = output.err if args.json else output.out
    title = f"Pack {pack.meta.get('name')!r} version {pack.meta.get('version')}"
    say(f"{title}: {len(pending)} to apply, {len(changes) - len(pending)} unchanged.")
    for change in changes:
        detail = f" ({change.detail})" if change.detail else ""
        say(f"  {change.action:<9}  {change.definition.kind:<13}  {change.definition.name}{detail}")
    if not args.dry_run:
        for change in pending:
            upload_definition(client, change.definition)
        say(f"Applied {len(pending)} change(s)." if pending else "Nothing to apply.")
    else:
        say("Dry run: nothing was applied.")
    if args.json:
        output.emit_json(
            {
                "pack": {k: pack.meta.get(k) for k in ("name", "version")},
                "changes": [c.to_json() for c in changes],
                "applied": not args.dry_run,
            }
        )
    return EXIT_OK


def plan_import(client: GatewayClient, pack: Pack) -> list[Change]:
    """Compare each definition of ``pack`` with the gateway's current one."""
    steps = {s["name"]: s for s in list_all(client, "step")} if pack.steps else {}
    documents = {
        kind: {d["name"]: strip_server_keys(d, kind) for d in list_all(client, kind)}
        for kind, present in (
            ("application", pack.applications),
            ("configuration", pack.configurations),
        )
        if present
    }
    schedules = list_all(client, "schedule") if pack.schedules else []
    changes = []
    for definition in pack.definitions():
        if definition.kind == "step":
            changes.append(_step_change(definition, steps.get(definition.name)))
        elif definition.kind == "schedule":
            changes.append(_schedule_change(definition, schedules))
        else:
            current = documents[definition.kind].get(definition.name)
            changes.append(_document_change(definition, current))
    return changes


def _step_change(definition: Definition, current: dict[str, Any] | None) -> Change:
    if current is None:
        return Change(ADD, definition)
    if current.get("sha256") == _sha256(definition.body["data"]):
        return Change(UNCHANGED, definition, f"version {current.get('version')}")
    return Change(CHANGE, definition, f"version {current.get('version')} replaced")


def _document_change(definition: Definition, current: dict[str, Any] | None) -> Change:
    if current is None:
        return Change(ADD, definition)
    if _canonical(current) == _canonical(definition.body):
        return Change(UNCHANGED, definition)
    keys = sorted(
        k for k in set(current) | set(definition.body) if current.get(k) != definition.body.get(k)
    )
    return Change(CHANGE, definition, "differs in " + ", ".join(keys))


def _schedule_change(definition: Definition, current: list[dict[str, Any]]) -> Change:
    # A schedule's id is its entry_id; the gateway fills in defaults, so only
    # the keys the pack sets are compared.
    body = definition.body
    match = next((s for s in current if s.get("entry_id") == body.get("entry_id")), None)
    if match is None:
        return Change(ADD, definition)
    if all(_canonical(match.get(k)) == _canonical(v) for k, v in body.items()):
        return Change(UNCHANGED, definition)
    keys = sorted(k for k, v in body.items() if _canonical(match.get(k)) != _canonical(v))
    return Change(CHANGE, definition, "differs in " + ", ".join(keys))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
