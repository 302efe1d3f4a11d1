"""What ships built in: the default steps, the template application, their manifest.

Step files and the application live in this package as data files (manual,
"Default Steps" and "Default Integration Application"). ``manifest.json``
holds what was computed from them at build time: each file's digest, the
digests of every earlier release of it (so an upgrade can tell a shipped
version from a user's upload) and each step's metadata, read in a sandbox
child. Regenerate it after changing a built-in with
``python -m iscore.builtins``; a test fails while it is stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from iscore.errors import IscoreError
from iscore.models.application import Application
from iscore.models.step import StepMetadata

__all__ = [
    "APPLICATION_NAMES",
    "STEP_NAMES",
    "BuiltinApplication",
    "BuiltinCatalogError",
    "BuiltinStep",
    "Catalog",
    "application_document",
    "build_manifest",
    "document_digest",
    "load_catalog",
    "source_digest",
    "step_source",
]

# The default steps, in the manual's order ("Default Steps").
STEP_NAMES = (
    "MicrosoftSqlDescribe",
    "MicrosoftSqlInsert",
    "MicrosoftSqlSelect",
    "MySQLDescribe",
    "MySQLInsert",
    "MySQLSelect",
    "QueryGQL",
    "QueryREST",
    "stepTemplate",
)

# The default integration applications.
APPLICATION_NAMES = ("integration_template",)

MANIFEST_FILE = "manifest.json"


class BuiltinCatalogError(IscoreError):
    """The built-in files or their manifest are missing or do not match."""

    code = "builtin_catalog_invalid"


@dataclass(frozen=True, slots=True)
class BuiltinStep:
    """One default step: its source, metadata and the digests of shipped versions.

    ``metadata`` is None when the manifest does not describe this exact
    source (a stale manifest); the seeder then reads it in a sandbox.
    """

    name: str
    source: str
    digest: str
    metadata: StepMetadata | None
    shipped_digests: frozenset[str]


@dataclass(frozen=True, slots=True)
class BuiltinApplication:
    """One default application document and the digests of shipped versions."""

    name: str
    document: dict[str, Any]
    digest: str
    shipped_digests: frozenset[str]


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything shipped built in."""

    steps: tuple[BuiltinStep, ...]
    applications: tuple[BuiltinApplication, ...]


def _package() -> Any:
    return resources.files("iscore.builtins")


def step_source(name: str) -> str:
    """Return the source of built-in step ``name``."""
    return str((_package() / "steps" / f"{name}.py").read_text(encoding="utf-8"))


def application_document(name: str) -> dict[str, Any]:
    """Return built-in application ``name`` as the gateway would store it.

    Raises ``BuiltinCatalogError`` when the shipped file is not a valid
    application.
    """
    text = (_package() / "applications" / f"{name}.json").read_text(encoding="utf-8")
    try:
        return Application.from_document(json.loads(text)).to_document()
    except (ValueError, IscoreError) as err:
        raise BuiltinCatalogError(
            f"Built-in application {name!r} is not a valid application: {err}"
        ) from err


def source_digest(source: str) -> str:
    """Return the SHA-256 hex digest of a step source, as stores record it."""
    return hashlib.sha256(source.encode()).hexdigest()


def document_digest(document: dict[str, Any]) -> str:
    """Return a SHA-256 hex digest of a document that ignores key order."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest() -> dict[str, Any]:
    """Return the shipped manifest, or an empty one when there is none."""
    path = _package() / MANIFEST_FILE
    if not path.is_file():
        return {"steps": {}, "applications": {}}
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def load_catalog() -> Catalog:
    """Read the built-in files and the manifest into a ``Catalog``."""
    manifest = read_manifest()
    steps = []
    for name in STEP_NAMES:
        source = step_source(name)
        digest = source_digest(source)
        entry = manifest["steps"].get(name, {})
        metadata = None
        if entry.get("digest") == digest:
            metadata = StepMetadata.model_validate(entry["metadata"])
        shipped = frozenset([digest, *entry.get("shipped_digests", [])])
        steps.append(BuiltinStep(name, source, digest, metadata, shipped))

    applications = []
    for name in APPLICATION_NAMES:
        document = application_document(name)
        digest = document_digest(document)
        entry = manifest["applications"].get(name, {})
        shipped = frozenset([digest, *entry.get("shipped_digests", [])])
        applications.append(BuiltinApplication(name, document, digest, shipped))
    return Catalog(steps=tuple(steps), applications=tuple(applications))


async def build_manifest() -> dict[str, Any]:
    """Compute the manifest from the files, keeping the digests of earlier releases.

    Step metadata is read in one sandbox child. Raises
    ``StepInspectionError`` when a built-in step does not load.
    """
    from iscore.runtime.child_jobs import inspect_in_sandbox
    from iscore.runtime.pool import ChildPool

    previous = read_manifest()
    manifest: dict[str, Any] = {"steps": {}, "applications": {}}
    # One child reads them all: these files are ours, not user code.
    async with ChildPool(size=1, tasks_per_child=len(STEP_NAMES)) as pool:
        for name in STEP_NAMES:
            source = step_source(name)
            metadata = await inspect_in_sandbox(pool, source, name)
            manifest["steps"][name] = _entry(
                previous["steps"].get(name, {}),
                source_digest(source),
                metadata=metadata.model_dump(mode="json"),
            )
    for name in APPLICATION_NAMES:
        digest = document_digest(application_document(name))
        manifest["applications"][name] = _entry(previous["applications"].get(name, {}), digest)
    return manifest


def _entry(previous: dict[str, Any], digest: str, **extra: Any) -> dict[str, Any]:
    shipped = set(previous.get("shipped_digests", []))
    if previous.get("digest"):
        shipped.add(previous["digest"])
    shipped.discard(digest)
    return {"digest": digest, "shipped_digests": sorted(shipped), **extra}


def main() -> None:
    """Rewrite ``manifest.json`` next to this module from the shipped files."""
    manifest = asyncio.run(build_manifest())
    path = resources.files("iscore.builtins") / MANIFEST_FILE
    with resources.as_file(path) as target:
        target.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
