"""The embedded store: one SQLite file in WAL mode.

Every statement runs on one dedicated thread, so writes from this process
are serialized and the event loop never blocks on disk. Runs and step tasks
are kept as JSON documents plus copies of the columns queries filter on;
compare-and-set updates are single ``UPDATE ... WHERE`` statements, atomic
even when several processes share the file.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgpack  # type: ignore[import-untyped] # ships no type information
from pydantic import BaseModel, TypeAdapter

from iscore.models.run import ACTIVE_STATES, RunRecord, RunState, StepTaskRecord, utc_now
from iscore.models.step import StepMetadata
from iscore.stores._sqlite_api import API_SCHEMA, ApiTablesMixin
from iscore.stores._sqlite_schedules import SCHEDULE_SCHEMA, ScheduleTablesMixin
from iscore.stores.base import (
    ApplicationRecord,
    ConfigurationRecord,
    DefinitionRecord,
    LogLine,
    StepRecord,
    StoreError,
    StoreUnavailableError,
    VersionConflictError,
)

T = TypeVar("T")
D = TypeVar("D", bound=DefinitionRecord)

# How long a statement waits for another process's write lock, in ms.
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS steps (
    name TEXT NOT NULL, version INTEGER NOT NULL, source TEXT NOT NULL,
    sha256 TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS applications (
    name TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL,
    updated_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS configurations (
    name TEXT NOT NULL, version INTEGER NOT NULL, document TEXT NOT NULL,
    updated_at TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, application TEXT NOT NULL, state TEXT NOT NULL,
    created_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_application ON runs (application, created_at);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state);
CREATE TABLE IF NOT EXISTS step_tasks (
    task_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, position INTEGER NOT NULL,
    state TEXT NOT NULL, attempt INTEGER NOT NULL, doc TEXT NOT NULL, result BLOB);
CREATE INDEX IF NOT EXISTS step_tasks_by_run ON step_tasks (run_id, position);
CREATE TABLE IF NOT EXISTS task_logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS task_logs_by_task ON task_logs (task_id, seq);
"""

# Record fields copied into their own column (for WHERE and ORDER BY), with
# the conversion from the validated Python value.
_RUN_COLUMNS: dict[str, Callable[[Any], Any]] = {
    "application": str,
    "state": str,
    "created_at": datetime.timestamp,
}
_TASK_COLUMNS: dict[str, Callable[[Any], Any]] = {
    "position": int,
    "state": str,
    "attempt": int,
}


class SqliteStore(ApiTablesMixin, ScheduleTablesMixin):
    """The ``Store`` on a SQLite file; ``":memory:"`` keeps it in memory."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """A store for ``sqlite:///relative/path.db`` or ``sqlite:////absolute.db``."""
        prefix = "sqlite:///"
        if not url.startswith(prefix) or len(url) == len(prefix):
            raise StoreUnavailableError(
                "A SQLite store URL must look like sqlite:///path/to/file.db "
                "(four slashes for an absolute path)."
            )
        return cls(url[len(prefix) :])

    # Lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            self._conn = await self._run(self._connect)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._run(conn.close)
        self._executor.shutdown(wait=False)
        self._executor = None

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        # The store is the system of record: a commit survives a power cut.
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)
        conn.executescript(API_SCHEMA)
        conn.executescript(SCHEDULE_SCHEMA)
        return conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError("The SQLite store is not open; call open() first.")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.OperationalError as err:
            raise StoreUnavailableError(
                f"The SQLite store at {self.path!r} failed: {err}; check the disk and "
                "that no other process holds a long write lock."
            ) from err

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("The SQLite store is not open; call open() first.")
        return self._conn

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._transaction, fn)

    async def _read(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return await self._run(lambda: self._db.execute(sql, params).fetchall())

    # Steps -----------------------------------------------------------------

    async def put_step(self, name: str, source: str, metadata: StepMetadata) -> StepRecord:
        sha256 = hashlib.sha256(source.encode()).hexdigest()

        def put(conn: sqlite3.Connection) -> sqlite3.Row:
            latest = conn.execute(
                "SELECT * FROM steps WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
            ).fetchone()
            if latest is not None and not latest["deleted"] and latest["sha256"] == sha256:
                unchanged: sqlite3.Row = latest
                return unchanged
            version = latest["version"] + 1 if latest is not None else 1
            conn.execute(
                "INSERT INTO steps (name, version, source, sha256, metadata, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, version, source, sha256, metadata.model_dump_json(), _iso_now()),
            )
            row: sqlite3.Row = conn.execute(
                "SELECT * FROM steps WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            return row

        return _step_record(await self._write(put))

    async def get_step(self, name: str, version: int | None = None) -> StepRecord | None:
        row = await self._run(self._definition_row, "steps", name, version)
        return _step_record(row) if row is not None else None

    async def list_steps(self, *, offset: int = 0, limit: int = 100) -> list[StepRecord]:
        rows = await self._read(_latest_sql("steps"), limit, offset)
        return [_step_record(row) for row in rows]

    async def delete_step(self, name: str) -> bool:
        return await self._write(functools.partial(_delete_latest, "steps", name))

    # Applications and configurations ---------------------------------------

    async def put_application(
        self, document: dict[str, Any], *, expected_version: int | None = None
    ) -> ApplicationRecord:
        return await self._put_definition(
            "applications", ApplicationRecord, document, expected_version
        )

    async def get_application(
        self, name: str, version: int | None = None
    ) -> ApplicationRecord | None:
        return await self._get_definition("applications", ApplicationRecord, name, version)

    async def list_applications(
        self, *, offset: int = 0, limit: int = 100
    ) -> list[ApplicationRecord]:
        rows = await self._read(_latest_sql("applications"), limit, offset)
        return [_definition_record(ApplicationRecord, row) for row in rows]

    async def delete_application(self, name: str) -> bool:
        return await self._write(functools.partial(_delete_latest, "applications", name))

    async def put_configuration(
        self, document: dict[str, Any], *, expected_version: int | None = None
    ) -> ConfigurationRecord:
        return await self._put_definition(
            "configurations", ConfigurationRecord, document, expected_version
        )

    async def get_configuration(
        self, name: str, version: int | None = None
    ) -> ConfigurationRecord | None:
        return await self._get_definition("configurations", ConfigurationRecord, name, version)

    async def list_configurations(
        self, *, offset: int = 0, limit: int = 100
    ) -> list[ConfigurationRecord]:
        rows = await self._read(_latest_sql("configurations"), limit, offset)
        return [_definition_record(ConfigurationRecord, row) for row in rows]

    async def delete_configuration(self, name: str) -> bool:
        return await self._write(functools.partial(_delete_latest, "configurations", name))

    # Configuration key rotation (issue 6) -----------------------------------

    async def list_configuration_versions(self) -> list[ConfigurationRecord]:
        rows = await self._read("SELECT * FROM configurations ORDER BY name, version")
        return [_definition_record(ConfigurationRecord, row) for row in rows]

    async def replace_configuration_document(
        self, name: str, version: int, document: dict[str, Any], *, expected: dict[str, Any]
    ) -> bool:
        text = json.dumps(document)

        def replace(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT document FROM configurations WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is None or json.loads(row["document"]) != expected:
                return False
            conn.execute(
                "UPDATE configurations SET document = ? WHERE name = ? AND version = ?",
                (text, name, version),
            )
            return True

        return await self._write(replace)

    async def _put_definition(
        self, table: str, record: type[D], document: dict[str, Any], expected_version: int | None
    ) -> D:
        name = document.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"A stored {table[:-1]} document needs a 'name' string.")
        text = json.dumps(document)

        def put(conn: sqlite3.Connection) -> sqlite3.Row:
            latest = conn.execute(
                f"SELECT version, deleted FROM {table} WHERE name = ? "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            ).fetchone()
            current = latest["version"] if latest is not None and not latest["deleted"] else 0
            if expected_version is not None and expected_version != current:
                raise VersionConflictError(
                    table[:-1], name, expected=expected_version, current=current
                )
            version = latest["version"] + 1 if latest is not None else 1
            conn.execute(
                f"INSERT INTO {table} (name, version, document, updated_at) VALUES (?, ?, ?, ?)",
                (name, version, text, _iso_now()),
            )
            row: sqlite3.Row = conn.execute(
                f"SELECT * FROM {table} WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            return row

        return _definition_record(record, await self._write(put))

    async def _get_definition(
        self, table: str, record: type[D], name: str, version: int | None
    ) -> D | None:
        row = await self._run(self._definition_row, table, name, version)
        return _definition_record(record, row) if row is not None else None

    def _definition_row(self, table: str, name: str, version: int | None) -> sqlite3.Row | None:
        # An explicit version stays readable after a delete: replays need it.
        if version is not None:
            exact: sqlite3.Row | None = self._db.execute(
                f"SELECT * FROM {table} WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            return exact
        row = self._db.execute(
            f"SELECT * FROM {table} WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
        ).fetchone()
        return None if row is None or row["deleted"] else row

    # Runs ------------------------------------------------------------------

    async def create_run(self, run: RunRecord, tasks: Sequence[StepTaskRecord]) -> bool:
        run_row = (
            run.run_id,
            run.application,
            str(run.state),
            run.created_at.timestamp(),
            run.model_dump_json(),
        )
        task_rows = [_task_row(task) for task in tasks]

        def create(conn: sqlite3.Connection) -> bool:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO runs (run_id, application, state, created_at, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                run_row,
            ).rowcount
            if not inserted:
                return False
            conn.executemany(
                "INSERT INTO step_tasks (task_id, run_id, position, state, attempt, doc, "
                "result) VALUES (?, ?, ?, ?, ?, ?, ?)",
                task_rows,
            )
            return True

        try:
            return await self._write(create)
        except sqlite3.IntegrityError as err:
            raise StoreError(
                f"Run {run.run_id!r} was not stored: a step task id is already in use."
            ) from err

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._read("SELECT doc FROM runs WHERE run_id = ?", run_id)
        return RunRecord.model_validate_json(rows[0]["doc"]) if rows else None

    async def latest_run(self, application: str) -> RunRecord | None:
        rows = await self._read(
            "SELECT doc FROM runs WHERE application = ? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            application,
        )
        return RunRecord.model_validate_json(rows[0]["doc"]) if rows else None

    async def list_runs(
        self,
        *,
        application: str | None = None,
        states: Collection[RunState] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[RunRecord]:
        where, params = ["1"], []
        if application is not None:
            where.append("application = ?")
            params.append(application)
        if states is not None:
            where.append(f"state IN ({_marks(states)})")
            params.extend(str(state) for state in states)
        rows = await self._read(
            f"SELECT doc FROM runs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
            *params,
            limit,
            offset,
        )
        return [RunRecord.model_validate_json(row["doc"]) for row in rows]

    async def unfinished_runs(self) -> list[RunRecord]:
        rows = await self._read(
            f"SELECT doc FROM runs WHERE state IN ({_marks(ACTIVE_STATES)}) "
            "ORDER BY created_at, rowid",
            *sorted(ACTIVE_STATES),
        )
        return [RunRecord.model_validate_json(row["doc"]) for row in rows]

    async def update_run(
        self,
        run_id: str,
        *,
        from_states: Collection[RunState] | None = None,
        **fields: Any,
    ) -> bool:
        update = _Update(RunRecord, fields, _RUN_COLUMNS, frozen={"run_id"})
        sql, params = update.statement("runs", "run_id", run_id, from_states=from_states)
        return await self._run(self._changed, sql, params)

    # Step tasks ------------------------------------------------------------

    async def get_step_task(self, task_id: str) -> StepTaskRecord | None:
        rows = await self._read("SELECT doc, result FROM step_tasks WHERE task_id = ?", task_id)
        return _task_record(rows[0]) if rows else None

    async def list_step_tasks(self, run_id: str) -> list[StepTaskRecord]:
        rows = await self._read(
            "SELECT doc, result FROM step_tasks WHERE run_id = ? ORDER BY position", run_id
        )
        return [_task_record(row) for row in rows]

    async def update_step_task(
        self,
        task_id: str,
        *,
        from_states: Collection[RunState] | None = None,
        expected_attempt: int | None = None,
        **fields: Any,
    ) -> bool:
        update = _Update(StepTaskRecord, fields, _TASK_COLUMNS, frozen={"task_id", "run_id"})
        sql, params = update.statement(
            "step_tasks",
            "task_id",
            task_id,
            from_states=from_states,
            expected_attempt=expected_attempt,
        )
        return await self._run(self._changed, sql, params)

    def _changed(self, sql: str, params: Sequence[Any]) -> bool:
        return self._db.execute(sql, params).rowcount == 1

    # Logs ------------------------------------------------------------------

    async def append_logs(self, task_id: str, records: Sequence[dict[str, Any]]) -> None:
        rows = [(task_id, LogLine.model_validate(record).model_dump_json()) for record in records]
        if not rows:
            return
        await self._write(
            lambda conn: conn.executemany(
                "INSERT INTO task_logs (task_id, line) VALUES (?, ?)", rows
            )
        )

    async def get_logs(self, task_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT line FROM task_logs WHERE task_id = ? ORDER BY seq", task_id
        )
        return [LogLine.model_validate_json(row["line"]).model_dump() for row in rows]


class _Update:
    """A compare-and-set ``UPDATE`` of one record, its fields validated first."""

    def __init__(
        self,
        model: type[BaseModel],
        fields: dict[str, Any],
        columns: dict[str, Callable[[Any], Any]],
        *,
        frozen: set[str],
    ) -> None:
        unknown = sorted(set(fields) - set(model.model_fields) | (set(fields) & frozen))
        if unknown:
            raise TypeError(f"{model.__name__} has no updatable field(s) {unknown}.")
        self.model = model
        self.values = {name: _adapter(model, name).validate_python(v) for name, v in fields.items()}
        self.columns = columns

    def statement(
        self,
        table: str,
        key: str,
        key_value: str,
        *,
        from_states: Collection[RunState] | None,
        expected_attempt: int | None = None,
    ) -> tuple[str, list[Any]]:
        doc_fields = {n: v for n, v in self.values.items() if n != "result"}
        sets: list[str] = []
        params: list[Any] = []
        if doc_fields:
            paths = ", ".join(f"'$.{name}', json(?)" for name in doc_fields)
            sets.append(f"doc = json_set(doc, {paths})")
            params.extend(
                _adapter(self.model, n).dump_json(v).decode() for n, v in doc_fields.items()
            )
        if "result" in self.values:
            sets.append("result = ?")
            params.append(_packed(self.values["result"]))
        for name, value in self.values.items():
            if name in self.columns:
                sets.append(f"{name} = ?")
                params.append(self.columns[name](value))

        where = [f"{key} = ?"]
        params.append(key_value)
        if from_states is not None:
            where.append(f"state IN ({_marks(from_states)})")
            params.extend(str(state) for state in from_states)
        if expected_attempt is not None:
            where.append("attempt = ?")
            params.append(expected_attempt)
        assignments = ", ".join(sets) or "state = state"
        return f"UPDATE {table} SET {assignments} WHERE {' AND '.join(where)}", params


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    annotation: Any = info.annotation
    if info.metadata:
        # Field constraints (ge=0, patterns) live beside the bare annotation.
        annotation = Annotated[(annotation, *info.metadata)]
    return TypeAdapter(annotation)


def _marks(values: Collection[Any]) -> str:
    # SQLite accepts an empty IN (); it then matches nothing, as an empty
    # from_states should.
    return ", ".join("?" for _ in values)


def _latest_sql(table: str) -> str:
    return (
        f"SELECT * FROM {table} AS t WHERE deleted = 0 AND version = "
        f"(SELECT MAX(version) FROM {table} WHERE name = t.name) "
        "ORDER BY name LIMIT ? OFFSET ?"
    )


def _delete_latest(table: str, name: str, conn: sqlite3.Connection) -> bool:
    cursor = conn.execute(
        f"UPDATE {table} SET deleted = 1 WHERE name = ? AND deleted = 0 AND version = "
        f"(SELECT MAX(version) FROM {table} WHERE name = ?)",
        (name, name),
    )
    return cursor.rowcount > 0


def _iso_now() -> str:
    return utc_now().isoformat()


def _step_record(row: sqlite3.Row) -> StepRecord:
    return StepRecord(
        name=row["name"],
        version=row["version"],
        source=row["source"],
        sha256=row["sha256"],
        metadata=StepMetadata.model_validate_json(row["metadata"]),
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _definition_record(record: type[D], row: sqlite3.Row) -> D:
    return record(
        name=row["name"],
        version=row["version"],
        document=json.loads(row["document"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _packed(result: dict[str, Any] | None) -> bytes | None:
    return None if result is None else msgpack.packb(result, use_bin_type=True)


def _task_row(task: StepTaskRecord) -> tuple[Any, ...]:
    doc = task.model_dump_json(exclude={"result"})
    return (
        task.task_id,
        task.run_id,
        task.position,
        str(task.state),
        task.attempt,
        doc,
        _packed(task.result),
    )


def _task_record(row: sqlite3.Row) -> StepTaskRecord:
    doc = json.loads(row["doc"])
    doc["result"] = None if row["result"] is None else msgpack.unpackb(row["result"], raw=False)
    return StepTaskRecord.model_validate(doc)
