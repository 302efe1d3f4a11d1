"""Content packs on disk: a directory, ``.zip`` (or SyncPack ``.whl``) or ``.tar.gz``.

The layout is PowerFlow's SyncPack layout, so a SyncPack imports as is::

    meta.json           name, version, description, schedules (+ "iscli" manifest)
    steps/<name>.py     step sources
    apps/<name>.json    applications
    configs/<name>.json configurations (values marked encrypted stay ciphertext)

The layout may sit one level down (a SyncPack project keeps it in a folder
named after the pack; a wheel holds that folder beside its ``.dist-info``).
Archives are read in memory, member by member, and never extracted.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from iscli.definition import Definition, check_step_source, parse_json_text, to_definition
from iscli.errors import LocalFileError

META_FILE = "meta.json"
# Folder of each kind of definition inside a pack, and the suffix of its files.
FOLDERS = {
    "step": ("steps", ".py"),
    "application": ("apps", ".json"),
    "configuration": ("configs", ".json"),
}
ZIP_SUFFIXES = (".zip", ".whl")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# Largest member read from an archive: the gateway accepts 16 MiB bodies.
MAX_MEMBER_BYTES = 16 * 1024 * 1024
# Names that are safe as one file name on every platform.
SAFE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")
# Version of the "iscli" manifest section iscli writes into meta.json.
MANIFEST_FORMAT = 1


@dataclass(slots=True)
class Pack:
    """Definitions of one content pack, plus its ``meta.json``."""

    meta: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)
    configurations: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    # Where each definition was read from, for messages.
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    # Version of each definition on the system it was exported from.
    versions: dict[tuple[str, str], int] = field(default_factory=dict)

    def definitions(self) -> list[Definition]:
        """Everything in the pack, in upload order (steps first, schedules last)."""
        items = [
            Definition("step", n, {"name": n, "data": s}, self._origin("step", n))
            for n, s in sorted(self.steps.items())
        ]
        items += [
            Definition("configuration", n, d, self._origin("configuration", n))
            for n, d in sorted(self.configurations.items())
        ]
        items += [
            Definition("application", n, d, self._origin("application", n))
            for n, d in sorted(self.applications.items())
        ]
        items += [
            Definition("schedule", str(d.get("entry_id") or d.get("id")), d, Path(META_FILE))
            for d in self.schedules
        ]
        return items

    def _origin(self, kind: str, name: str) -> Path:
        return Path(self.origins.get((kind, name), name))


# Reading -----------------------------------------------------------------


def read_pack(location: Path) -> Pack:
    """Read and check a pack; raises ``LocalFileError`` naming the bad file."""
    if not location.exists():
        raise LocalFileError(f"Pack '{location}' does not exist.", path=str(location))
    files = _list_files(location)
    root = _find_root(files, location)
    pack = Pack()
    for relative, load in sorted(files.items()):
        if not relative.startswith(root):
            continue
        label = f"{location}/{relative}" if location.is_dir() else f"{location}!{relative}"
        _add_file(pack, PurePosixPath(relative[len(root) :]), label, load)
    return pack


def _add_file(pack: Pack, inner: PurePosixPath, label: str, load: Callable[[], bytes]) -> None:
    if inner.as_posix() == META_FILE:
        pack.meta = _meta(parse_json_text(_text(load(), label), label), label)
        pack.schedules = [
            to_definition(s, "schedule", Path(label)).body for s in pack.meta.get("schedules") or []
        ]
        return
    if len(inner.parts) != 2 or inner.name.startswith(("_", ".")):
        return
    for kind, (folder, suffix) in FOLDERS.items():
        if inner.parts[0] != folder or inner.suffix != suffix:
            continue
        text = _text(load(), label)
        if kind == "step":
            check_step_source(text, label)
            pack.steps[inner.stem] = text
            pack.origins[(kind, inner.stem)] = label
            return
        definition = to_definition(parse_json_text(text, label), kind, Path(label))
        target = pack.applications if kind == "application" else pack.configurations
        if definition.name in target:
            first = pack.origins[(kind, definition.name)]
            raise LocalFileError(
                f"Files '{first}' and '{label}' both define {kind} {definition.name!r}; keep one.",
                path=label,
            )
        target[definition.name] = definition.body
        pack.origins[(kind, definition.name)] = label


def _meta(document: Any, label: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise LocalFileError(f"File '{label}' must hold a JSON object.", path=label)
    schedules = document.get("schedules")
    if schedules is not None and not isinstance(schedules, list):
        raise LocalFileError(
            f"File '{label}': 'schedules' must be a list of schedule objects, found "
            f"{type(schedules).__name__}.",
            path=label,
        )
    return document


def _text(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LocalFileError(f"File '{label}' is not UTF-8 text.", path=label) from err


def _find_root(files: dict[str, Callable[[], bytes]], location: Path) -> str:
    """The shallowest folder holding ``meta.json`` or a steps/apps/configs folder."""
    markers = {META_FILE, *(f"{folder}/" for folder, _ in FOLDERS.values())}
    roots = set()
    for relative in files:
        for marker in markers:
            index = relative.find(marker)
            at_boundary = index == 0 or (index > 0 and relative[index - 1] == "/")
            if at_boundary and (marker.endswith("/") or relative.endswith(marker)):
                roots.add(relative[:index])
    if not roots:
        raise LocalFileError(
            f"Pack '{location}' holds no meta.json and no steps/, apps/ or configs/ folder.",
            path=str(location),
            hint="Point iscli import at the folder that holds them.",
        )
    return min(roots, key=lambda r: (r.count("/"), r))


def _list_files(location: Path) -> dict[str, Callable[[], bytes]]:
    if location.is_dir():
        return {
            p.relative_to(location).as_posix(): p.read_bytes
            for p in location.rglob("*")
            if p.is_file()
        }
    name = location.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return _zip_files(location)
    if name.endswith(TAR_SUFFIXES):
        return _tar_files(location)
    raise LocalFileError(
        f"Pack '{location}' is neither a directory nor a .zip, .whl, .tar.gz or .tar archive.",
        path=str(location),
    )


def _zip_files(location: Path) -> dict[str, Callable[[], bytes]]:
    try:
        with zipfile.ZipFile(location) as archive:
            return {
                info.filename: _frozen(_zip_member(archive, info, location))
                for info in archive.infolist()
                if not info.is_dir()
            }
    except (OSError, zipfile.BadZipFile) as err:
        raise LocalFileError(
            f"Archive '{location}' cannot be read: {err}.", path=str(location)
        ) from err


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, location: Path) -> bytes:
    _check_size(info.file_size, f"{location}!{info.filename}")
    return archive.read(info)


def _tar_files(location: Path) -> dict[str, Callable[[], bytes]]:
    try:
        with tarfile.open(location) as archive:
            files = {}
            for member in archive.getmembers():
                if not member.isfile():
                    continue
                _check_size(member.size, f"{location}!{member.name}")
                reader = archive.extractfile(member)
                if reader is not None:
                    with reader:
                        files[member.name.removeprefix("./")] = _frozen(reader.read())
            return files
    except (OSError, tarfile.TarError) as err:
        raise LocalFileError(
            f"Archive '{location}' cannot be read: {err}.", path=str(location)
        ) from err


def _check_size(size: int, label: str) -> None:
    if size > MAX_MEMBER_BYTES:
        raise LocalFileError(f"File '{label}' is larger than {MAX_MEMBER_BYTES} bytes.", path=label)


def _frozen(data: bytes) -> Callable[[], bytes]:
    return lambda: data


# Writing -----------------------------------------------------------------


def write_pack(pack: Pack, destination: Path) -> None:
    """Write ``pack`` as a directory, or as an archive chosen by the suffix."""
    files = {META_FILE: json.dumps(pack.meta, indent=2).encode() + b"\n"}
    for name, source in pack.steps.items():
        files[f"steps/{safe_file_name(name)}.py"] = source.encode()
    for kind, documents in (
        ("application", pack.applications),
        ("configuration", pack.configurations),
    ):
        folder = FOLDERS[kind][0]
        for name, document in documents.items():
            files[f"{folder}/{safe_file_name(name)}.json"] = (
                json.dumps(document, indent=2).encode() + b"\n"
            )
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise LocalFileError(
            f"Destination '{destination}' already exists and is not empty.",
            path=str(destination),
            hint="Export to a new path.",
        )
    name = destination.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        _write_zip(files, destination)
    elif name.endswith(TAR_SUFFIXES):
        _write_tar(files, destination)
    else:
        for relative, data in files.items():
            path = destination / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def safe_file_name(name: str) -> str:
    """``name`` if it is safe as a file name; otherwise ``LocalFileError``."""
    if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise LocalFileError(
            f"Name {name!r} cannot be written as a file name; rename it on the server.", path=name
        )
    return name


def _write_zip(files: dict[str, bytes], destination: Path) -> None:
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative, data in files.items():
            archive.writestr(relative, data)


def _write_tar(files: dict[str, bytes], destination: Path) -> None:
    plain = destination.name.lower().endswith(".tar")
    with tarfile.open(destination, "w" if plain else "w:gz") as archive:
        for relative, data in files.items():
            info = tarfile.TarInfo(relative)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
