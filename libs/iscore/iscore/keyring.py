"""Where the encryption key ring lives, how services read it, and ``is-keys``.

The ring is one JSON file (the manual's ``encryption_key`` secret). Its
path is ``IS_ENCRYPTION_KEY_FILE`` when set, else ``encryption_key`` in the
data directory, created with mode 0600 on first use. Services re-read the
file when it changes, so a rotation reaches running processes without a
restart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from threading import Lock

import structlog

from iscore.errors import IscoreError
from iscore.logconfig import setup_logging
from iscore.secrets import (
    KeyRing,
    SecretUnreadableError,
    decrypt_value,
    encrypted_tokens,
    key_id_of,
    reencrypt_document,
)
from iscore.settings import Settings
from iscore.stores.base import Store, open_store

log = structlog.get_logger(__name__)

# Environment variable naming the key file (a mounted secret in production).
KEY_FILE_ENV = "IS_ENCRYPTION_KEY_FILE"
# File name of the key ring inside the data directory (embedded default).
DEFAULT_KEY_FILE_NAME = "encryption_key"
# Passes of ``rotate`` over the store before it gives up: a pass finds
# values an upload wrote with the old key while the previous pass ran.
ROTATION_PASSES = 5
# How ``status`` counts an encrypted variable that holds no token.
NO_KEY = "(no key)"
# Exit codes of ``is-keys``.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2


class KeyFileError(IscoreError):
    """The key file is missing where it must exist, or cannot be written."""

    code = "invalid_key_file"


class RotationError(IscoreError):
    """A rotation or prune stopped before it changed what it would break."""

    code = "rotation_failed"


def data_dir_from_env() -> Path:
    """The data directory services use (``IS_DATA_DIR``, default ``.isdata``)."""
    return Path(os.environ.get("IS_DATA_DIR", ".isdata")).resolve()


def key_file_path(data_dir: Path | None = None) -> tuple[Path, bool]:
    """The key file in use and whether it was configured explicitly."""
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return Path(configured).resolve(), True
    return (data_dir or data_dir_from_env()) / DEFAULT_KEY_FILE_NAME, False


def prepare_key_file(data_dir: Path | None = None) -> Path:
    """Return the key file's path, creating the embedded default if missing.

    A configured file (``IS_ENCRYPTION_KEY_FILE``) is never created: a
    missing one raises ``KeyFileError``, as a lost secret must not be
    replaced silently by a new key.
    """
    path, configured = key_file_path(data_dir)
    if path.exists():
        return path
    if configured:
        raise KeyFileError(
            f"Key file {str(path)!r} named by {KEY_FILE_ENV} does not exist; restore it "
            f"from your backup or unset {KEY_FILE_ENV} to use the data directory's key.",
            field=KEY_FILE_ENV,
        )
    create_key_file(path)
    return path


def create_key_file(path: Path) -> None:
    """Create ``path`` (mode 0600) holding a new ring, unless it exists."""
    # Written whole under a temporary name, then linked into place: link
    # fails if another process created the file first, and its key wins.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _write_private(path, KeyRing.new())
    try:
        os.link(temporary, path)
    except FileExistsError:
        return
    finally:
        temporary.unlink(missing_ok=True)
    log.info("key_file_created", path=str(path))


def _write_private(path: Path, ring: KeyRing) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as sink:
        sink.write(ring.to_json())
        sink.flush()
        os.fsync(sink.fileno())
    return temporary


def write_key_ring(path: Path, ring: KeyRing) -> None:
    """Replace the key file atomically with ``ring`` (mode 0600)."""
    temporary = _write_private(path, ring)
    try:
        os.replace(temporary, path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(
            f"Key file {str(path)!r} cannot be replaced ({err.strerror}); a mounted secret "
            "is read-only, so write the new ring elsewhere and update the secret.",
        ) from err


def read_key_ring(path: Path) -> KeyRing:
    """Read the ring in ``path``; raises ``KeyFileError`` when it is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise KeyFileError(
            f"Key file {str(path)!r} does not exist; restore it from your backup.",
        ) from err
    return KeyRing.from_json(text)


@dataclass
class KeySource:
    """A key file that is re-read whenever it changes on disk."""

    path: Path
    configured: bool = False

    def __post_init__(self) -> None:
        self._lock = Lock()
        self._seen: tuple[int, int, int] | None = None
        self._ring: KeyRing | None = None

    @classmethod
    def from_env(cls) -> KeySource:
        """The key file the environment names (see the module docstring)."""
        path, configured = key_file_path()
        return cls(path=path, configured=configured)

    def ring(self) -> KeyRing:
        """The current ring; creates the embedded default file on first use."""
        with self._lock:
            if not self.configured and not self.path.exists():
                create_key_file(self.path)
            try:
                info = self.path.stat()
            except FileNotFoundError as err:
                raise KeyFileError(
                    f"Key file {str(self.path)!r} does not exist; restore it from your backup.",
                ) from err
            seen = (info.st_ino, info.st_mtime_ns, info.st_size)
            if self._ring is None or seen != self._seen:
                self._ring = read_key_ring(self.path)
                self._seen = seen
                if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    log.warning(
                        "key_file_readable_by_others",
                        path=str(self.path),
                        hint="chmod 600 the key file",
                    )
            return self._ring


@cache
def default_key_source() -> KeySource:
    """The process-wide key source built from the environment."""
    return KeySource.from_env()


# Rotation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What ``rotate`` did."""

    new_key_id: str
    retired_key_ids: tuple[str, ...]
    reencrypted_count: int
    unreadable: tuple[str, ...] = ()


async def count_values_by_key(
    store: Store, ring: KeyRing | None = None
) -> tuple[Counter[str], list[str]]:
    """Stored values (every version) per key id, and where values are unreadable.

    With ``ring``, only values that decrypt are counted; the others are
    described (configuration, version, variable) in the list.
    """
    counts: Counter[str] = Counter()
    unreadable: list[str] = []
    for record in await store.list_configuration_versions():
        for variable, value in encrypted_tokens(record.document):
            if ring is not None:
                try:
                    decrypt_value(ring, record.name, variable, value)
                except SecretUnreadableError:
                    unreadable.append(
                        f"configuration {record.name!r} version {record.version} "
                        f"variable {variable!r}"
                    )
                    continue
            counts[key_id_of(value) or NO_KEY] += 1
    return counts, unreadable


async def rotate(store: Store, path: Path, *, skip_unreadable: bool = False) -> RotationReport:
    """Add a key, re-encrypt every stored value with it, retire the old keys.

    Keys stay in the file after retirement so tasks already sent under them
    still decrypt; ``prune`` removes them later. Before changing anything,
    raises ``RotationError`` when a stored value does not decrypt (unless
    ``skip_unreadable``: such values stay as they are and still fail
    closed), and afterwards when uploads keep writing under an old key.
    """
    ring = read_key_ring(path)
    _, unreadable = await count_values_by_key(store, ring)
    if unreadable and not skip_unreadable:
        raise RotationError(
            f"{len(unreadable)} stored value(s) do not decrypt, the first: {unreadable[0]}; "
            "upload them again with their plaintext, or pass --skip-unreadable to leave "
            "them as they are.",
        )
    previous = [key.key_id for key in ring.keys if key.retired_at is None]
    ring = ring.with_new_active_key()
    write_key_ring(path, ring)
    log.info("key_added", key_id=ring.active_id)

    total = 0
    for _ in range(ROTATION_PASSES):
        moved = await _reencrypt_pass(store, ring)
        total += moved
        if moved == 0:
            break
    else:
        raise RotationError(
            f"Values kept appearing under old keys after {ROTATION_PASSES} passes; run "
            "'is-keys rotate' again when uploads are quiet.",
        )
    ring = ring.with_retired(previous)
    write_key_ring(path, ring)
    log.info("keys_retired", key_ids=previous, reencrypted_count=total)
    return RotationReport(
        ring.active_id,
        tuple(k for k in previous if k != ring.active_id),
        total,
        tuple(unreadable),
    )


async def _reencrypt_pass(store: Store, ring: KeyRing) -> int:
    moved = 0
    for record in await store.list_configuration_versions():
        updated = reencrypt_document(ring, record.document, skip_unreadable=True)
        if updated is None:
            continue
        if await store.replace_configuration_document(
            record.name, record.version, updated, expected=record.document
        ):
            moved += 1
    return moved


async def prune(store: Store, path: Path, *, force: bool = False) -> tuple[str, ...]:
    """Remove retired keys from the file; returns their ids.

    Refuses (``RotationError``) while a stored value that decrypts still
    uses one (values that do not decrypt fail closed under any key), or,
    unless ``force``, while a run created before its retirement is
    unfinished: its tasks may carry values under that key.
    """
    ring = read_key_ring(path)
    retired = [key for key in ring.keys if key.retired_at is not None]
    if not retired:
        return ()
    counts, _ = await count_values_by_key(store, ring)
    for key in retired:
        if counts.get(key.key_id):
            raise RotationError(
                f"Key {key.key_id!r} still encrypts {counts[key.key_id]} stored value(s); "
                "run 'is-keys rotate' first.",
            )
    if not force:
        newest = max(key.retired_at for key in retired if key.retired_at is not None)
        waiting = [run.run_id for run in await store.unfinished_runs() if run.created_at < newest]
        if waiting:
            raise RotationError(
                f"{len(waiting)} unfinished run(s) started before the keys were retired "
                f"(first: {waiting[0]!r}); prune when they finish or pass --force.",
            )
    write_key_ring(path, ring.without(k.key_id for k in retired))
    return tuple(key.key_id for key in retired)


# Command line ---------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="is-keys",
        description="Manage the key ring that encrypts configuration values.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show-path", help="print the key file in use")
    commands.add_parser("status", help="list keys and how many stored values each encrypts")
    rotate_parser = commands.add_parser(
        "rotate", help="add a key, re-encrypt every value, retire old keys"
    )
    rotate_parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="leave values that do not decrypt as they are instead of stopping",
    )
    prune_parser = commands.add_parser("prune", help="remove retired keys from the file")
    prune_parser.add_argument(
        "--force", action="store_true", help="prune even while older runs are unfinished"
    )
    return parser


async def _store_command(args: argparse.Namespace, path: Path) -> None:
    store = await open_store(Settings.from_env().store_url)
    try:
        if args.command == "status":
            await _print_status(store, path)
        elif args.command == "rotate":
            report = await rotate(store, path, skip_unreadable=args.skip_unreadable)
            retired = ", ".join(report.retired_key_ids) or "none"
            _say(
                f"Active key: {report.new_key_id}. Re-encrypted "
                f"{report.reencrypted_count} configuration version(s). Retired: {retired}."
            )
            for place in report.unreadable:
                _say(f"  left as it was (does not decrypt): {place}")
        else:
            pruned = await prune(store, path, force=args.force)
            _say(f"Removed retired key(s): {', '.join(pruned) or 'none'}.")
    finally:
        await store.close()


async def _print_status(store: Store, path: Path) -> None:
    ring = read_key_ring(path)
    counts, unreadable = await count_values_by_key(store, ring)
    _say(f"Key file: {path}")
    for key in ring.keys:
        state = (
            "active"
            if key.key_id == ring.active_id
            else ("retired" if key.retired_at else "inactive")
        )
        _say(
            f"  {key.key_id}  {state:<8}  created {key.created_at:%Y-%m-%d %H:%M:%S}Z  "
            f"values {counts.get(key.key_id, 0)}"
        )
    for place in unreadable:
        _say(f"  does not decrypt: {place}; upload its plaintext again")


def _say(line: str, *, error: bool = False) -> None:
    stream = sys.stderr if error else sys.stdout
    stream.write(line + "\n")
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``is-keys``; returns the exit code."""
    args = _parser().parse_args(argv)
    setup_logging("is-keys", os.environ.get("LOGLEVEL", "WARNING"))
    path, _ = key_file_path()
    try:
        if args.command == "show-path":
            _say(str(path))
            return EXIT_OK
        if args.command == "rotate":
            prepare_key_file()
        asyncio.run(_store_command(args, path))
    except RotationError as err:
        _say(f"is-keys: {err}", error=True)
        return EXIT_REFUSED
    except IscoreError as err:
        _say(f"is-keys: {err}", error=True)
        return EXIT_FAILED
    return EXIT_OK


def run() -> None:
    """Console script wrapper: exit with ``main``'s code."""
    raise SystemExit(main())
