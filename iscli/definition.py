"""Local definition files: step sources and JSON documents, checked before upload.

A JSON file that does not parse is reported with its line and column, and
a step file that does not compile with its line, before anything is sent
(the gateway would refuse them too, but a directory upload must not stop
half way through).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iscli.errors import LocalFileError

# Kinds of definition, in the order an upload sends them: steps and
# configurations before the applications that name them, schedules last.
KINDS = ("step", "configuration", "application", "schedule")
# Plural resource path of each kind in the API (the manual's `/schedule` is singular).
API_PATHS = {
    "step": "/steps",
    "application": "/applications",
    "configuration": "/configurations",
    "schedule": "/schedule",
}
JSON_HINT = (
    "Python literals such as True, None or single quotes are not JSON; "
    "use true, null and double quotes."
)


@dataclass(frozen=True, slots=True)
class Definition:
    """One step, application, configuration or schedule read from disk."""

    kind: str
    name: str
    body: dict[str, Any]
    path: Path


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; errors name the file, line and column."""
    return parse_json_text(read_text(path), str(path))


def parse_json_text(text: str, label: str) -> Any:
    """Parse JSON read from ``label`` (a file, or a member of an archive)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise LocalFileError(
            f"File '{label}' is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}.",
            path=label,
            hint=JSON_HINT,
        ) from err


def check_step_source(source: str, label: str) -> None:
    """Compile (never run) a step's source so a syntax error names its line."""
    try:
        compile(source, label, "exec", dont_inherit=True)
    except SyntaxError as err:
        raise LocalFileError(
            f"Step file '{label}' does not compile: {err.msg} at line {err.lineno}.",
            path=label,
        ) from err


def read_text(path: Path) -> str:
    """Read a UTF-8 text file or raise ``LocalFileError``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise LocalFileError(f"File '{path}' does not exist.", path=str(path)) from err
    except UnicodeDecodeError as err:
        raise LocalFileError(f"File '{path}' is not UTF-8 text.", path=str(path)) from err
    except OSError as err:
        raise LocalFileError(
            f"File '{path}' cannot be read: {err.strerror}.", path=str(path)
        ) from err


def read_step(path: Path) -> Definition:
    """A step file: its name is the file name without ``.py`` (MANUAL-NOTES 10)."""
    source = read_text(path)
    check_step_source(source, str(path))
    return Definition("step", path.stem, {"name": path.stem, "data": source}, path)


def read_document(path: Path, kind: str | None) -> Definition:
    """A JSON definition; ``kind`` None means: tell from its keys."""
    return to_definition(read_json_file(path), kind, path)


def to_definition(document: Any, kind: str | None, path: Path) -> Definition:
    """Check a parsed JSON document of ``kind`` read from ``path``."""
    if not isinstance(document, dict):
        raise LocalFileError(
            f"File '{path}' must hold one JSON object, found {type(document).__name__}.",
            path=str(path),
        )
    kind = kind or detect_kind(document, path)
    name = document.get("entry_id") if kind == "schedule" else document.get("name")
    if not isinstance(name, str) or not name:
        key = "entry_id" if kind == "schedule" else "name"
        raise LocalFileError(
            f"File '{path}' holds a {kind} without {key!r}; add the {kind}'s {key}.",
            path=str(path),
        )
    return Definition(kind, name, document, path)


def detect_kind(document: dict[str, Any], path: Path) -> str:
    """Tell an application, configuration or schedule document by its keys."""
    if "configuration_data" in document:
        return "configuration"
    if "steps" in document:
        return "application"
    if "schedule" in document and "application_id" in document:
        return "schedule"
    raise LocalFileError(
        f"File '{path}' is neither an application (no 'steps') nor a configuration "
        "(no 'configuration_data').",
        path=str(path),
        hint="Say which it is with -a or -c.",
    )


def collect(location: Path, kind: str | None) -> list[Definition]:
    """Read one file, or every step or JSON file directly inside a directory.

    ``kind`` ``"step"`` takes ``.py`` files, ``"application"`` and
    ``"configuration"`` take ``.json`` files; None takes both and tells
    them apart. Everything is read and checked before the caller sends any.
    """
    if not location.exists():
        raise LocalFileError(f"Path '{location}' does not exist.", path=str(location))
    if not location.is_dir():
        return [read_file(location, kind)]
    suffixes = {"step": {".py"}, None: {".py", ".json"}}.get(kind, {".json"})
    files = sorted(p for p in location.iterdir() if p.is_file() and p.suffix in suffixes)
    if not files:
        wanted = " or ".join(sorted(suffixes))
        raise LocalFileError(f"Directory '{location}' holds no {wanted} file.", path=str(location))
    definitions = [read_file(p, kind) for p in files]
    return sorted(definitions, key=lambda d: KINDS.index(d.kind))


def read_file(path: Path, kind: str | None) -> Definition:
    """Read one definition file of ``kind`` (None: by suffix and content)."""
    if kind == "step" or (kind is None and path.suffix == ".py"):
        return read_step(path)
    return read_document(path, kind)
