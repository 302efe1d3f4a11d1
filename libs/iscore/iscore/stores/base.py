"""The store interface: definitions, runs, step tasks and their logs.

The store is the system of record for run state (ARCHITECTURE.md,
"Guarantees"). The interface is document-shaped so SQLite (embedded) and
MongoDB (production) implement it alike; the shared contract tests in
``tests/iscore/stores`` hold every backend to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from iscore.errors import IscoreError
from iscore.accounts import TokenRecord, UserRecord
from iscore.models.run import RunRecord, RunState, StepTaskRecord, utc_now
from iscore.models.schedule import ScheduleRecord
from iscore.models.step import StepMetadata
from iscore.reports import ReportRecord


class StoreError(IscoreError):
    """A store operation failed for a reason other than the caller's input."""

    code = "store_error"


class StoreUnavailableError(StoreError):
    """The store cannot be reached or is not available in this build."""

    code = "store_unavailable"


class VersionConflictError(IscoreError):
    """A definition changed since the caller read it (optimistic concurrency)."""

    code = "version_conflict"

    def __init__(self, kind: str, name: str, *, expected: int, current: int) -> None:
        super().__init__(
            f"The {kind} {name!r} is at version {current}, not {expected} as expected; "
            "fetch the latest version, apply your change to it and upload again.",
            field="version",
        )
        self.kind = kind
        self.name = name
        self.expected = expected
        self.current = current


class StepRecord(BaseModel):
    """One uploaded version of a step file."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int = Field(ge=1)
    source: str
    sha256: str
    metadata: StepMetadata
    created_at: AwareDatetime


class DefinitionRecord(BaseModel):
    """One stored version of a definition document."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int = Field(ge=1)
    document: dict[str, Any]
    updated_at: AwareDatetime


class ApplicationRecord(DefinitionRecord):
    """One stored version of an application document."""


class ConfigurationRecord(DefinitionRecord):
    """One stored version of a configuration document."""


class LogLine(BaseModel):
    """One line of a step task's log, as ``append_logs`` takes it."""

    model_config = ConfigDict(frozen=True)

    level: str
    message: str
    at: AwareDatetime = Field(default_factory=utc_now)


class Store(Protocol):
    """Everything the services keep, behind one asynchronous interface.

    Definitions (steps, applications, configurations) are versioned from 1;
    older versions stay readable by number after newer uploads and after a
    delete, because replays need the exact version a run used. Updates of
    runs and step tasks are atomic compare-and-set operations: they return
    False, changing nothing, when the record is not in an expected state.
    """

    async def open(self) -> None:
        """Connect and create what is missing (tables, indexes)."""

    async def close(self) -> None:
        """Release connections; the store can be opened again."""

    async def put_step(self, name: str, source: str, metadata: StepMetadata) -> StepRecord:
        """Store a new version of a step file, or return the latest if unchanged."""

    async def get_step(self, name: str, version: int | None = None) -> StepRecord | None:
        """A given version of a step, or its latest (None when deleted)."""

    async def list_steps(self, *, offset: int = 0, limit: int = 100) -> list[StepRecord]:
        """Latest version of every step not deleted, by name."""

    async def delete_step(self, name: str) -> bool:
        """Delete a step; False when there was none."""

    async def put_application(
        self, document: dict[str, Any], *, expected_version: int | None = None
    ) -> ApplicationRecord:
        """Store a new version of ``document`` (keyed by its ``name``).

        ``expected_version`` (0: must not exist) guards against overwriting
        a change made meanwhile: ``VersionConflictError`` when it differs.
        """

    async def get_application(
        self, name: str, version: int | None = None
    ) -> ApplicationRecord | None:
        """A given version of an application, or its latest (None when deleted)."""

    async def list_applications(
        self, *, offset: int = 0, limit: int = 100
    ) -> list[ApplicationRecord]:
        """Latest version of every application not deleted, by name."""

    async def delete_application(self, name: str) -> bool:
        """Delete an application; False when there was none."""

    async def put_configuration(
        self, document: dict[str, Any], *, expected_version: int | None = None
    ) -> ConfigurationRecord:
        """Store a new version of a configuration; as ``put_application``."""

    async def get_configuration(
        self, name: str, version: int | None = None
    ) -> ConfigurationRecord | None:
        """A given version of a configuration, or its latest (None when deleted)."""

    async def list_configurations(
        self, *, offset: int = 0, limit: int = 100
    ) -> list[ConfigurationRecord]:
        """Latest version of every configuration not deleted, by name."""

    async def delete_configuration(self, name: str) -> bool:
        """Delete a configuration; False when there was none."""

    # Configuration key rotation (issue 6) -----------------------------------

    async def list_configuration_versions(self) -> list[ConfigurationRecord]:
        """Every stored version of every configuration, deleted ones included."""

    async def replace_configuration_document(
        self, name: str, version: int, document: dict[str, Any], *, expected: dict[str, Any]
    ) -> bool:
        """Swap the document of one stored version if it still equals ``expected``.

        Only key rotation rewrites a stored version, and only to re-encrypt
        the same values; False, changing nothing, when the document differs.
        """

    async def create_run(self, run: RunRecord, tasks: Sequence[StepTaskRecord]) -> bool:
        """Store a run and its step tasks at once; False if the run id exists."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id."""

    async def latest_run(self, application: str) -> RunRecord | None:
        """The most recently created run of ``application``."""

    async def list_runs(
        self,
        *,
        application: str | None = None,
        states: Collection[RunState] | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally of one application and in some states."""

    async def unfinished_runs(self) -> list[RunRecord]:
        """Runs not in a final state, oldest first (for the reconciler)."""

    async def update_run(
        self,
        run_id: str,
        *,
        from_states: Collection[RunState] | None = None,
        **fields: Any,
    ) -> bool:
        """Set ``fields`` if the run's state is in ``from_states`` (any when None)."""

    async def get_step_task(self, task_id: str) -> StepTaskRecord | None:
        """The step task with this id."""

    async def list_step_tasks(self, run_id: str) -> list[StepTaskRecord]:
        """The step tasks of a run, in application order."""

    async def update_step_task(
        self,
        task_id: str,
        *,
        from_states: Collection[RunState] | None = None,
        expected_attempt: int | None = None,
        **fields: Any,
    ) -> bool:
        """Set ``fields`` if state and attempt match: the fence on step attempts.

        One atomic compare-and-set: False, changing nothing, when the task's
        state is not in ``from_states`` or its attempt is not
        ``expected_attempt``.
        """

    async def append_logs(self, task_id: str, records: Sequence[dict[str, Any]]) -> None:
        """Append log lines (``{level, message, at}``) to a step task's log."""

    async def get_logs(self, task_id: str) -> list[dict[str, Any]]:
        """A step task's log lines in the order they were appended."""

    # Users, API tokens and reports (the REST API, issue 5) ----------------

    async def create_user(self, user: UserRecord) -> bool:
        """Store a new user; False, changing nothing, when the name is taken."""

    async def get_user(self, name: str) -> UserRecord | None:
        """The user called ``name``."""

    async def list_users(self, *, offset: int = 0, limit: int = 100) -> list[UserRecord]:
        """Users by name."""

    async def update_user(self, name: str, **fields: Any) -> UserRecord | None:
        """Set ``role`` and/or ``password_hash``; None when there is no such user."""

    async def delete_user(self, name: str) -> bool:
        """Delete a user and every API token of theirs; False when there was none."""

    async def create_token(self, token: TokenRecord) -> None:
        """Store a new API token record."""

    async def get_token(self, token_id: str) -> TokenRecord | None:
        """The API token with this id."""

    async def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        """API tokens, of one user or of everyone, oldest first."""

    async def delete_token(self, token_id: str) -> bool:
        """Revoke an API token; False when there was none."""

    async def add_report_rows(
        self, report_id: str, *, application: str, run_id: str, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Append ``rows`` to a report, creating the report when it is new."""

    async def get_report(self, report_id: str) -> ReportRecord | None:
        """The report with this id."""

    async def list_reports(
        self, *, application: str | None = None, offset: int = 0, limit: int = 100
    ) -> list[ReportRecord]:
        """Reports newest first, optionally of one application, without their rows."""

    async def delete_report(self, report_id: str) -> bool:
        """Delete one report; False when there was none."""

    async def delete_reports(self, application: str) -> int:
        """Delete every report of ``application``; return how many were deleted."""

    # Schedules and the scheduler's bookkeeping (issue 7) -------------------

    async def put_schedule(self, schedule_id: str, document: dict[str, Any]) -> ScheduleRecord:
        """Create or replace a schedule; it starts afresh from now.

        Raises the revision and resets anchor and cursor to now; fire
        counters and claimed fires not yet confirmed are kept.
        """

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        """The schedule with this id."""

    async def list_schedules(self, *, offset: int = 0, limit: int = 100) -> list[ScheduleRecord]:
        """Schedules by id."""

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; False when there was none."""

    async def claim_schedule_fires(
        self,
        schedule_id: str,
        *,
        revision: int,
        expected_cursor_ms: int,
        cursor_ms: int,
        fire_ms: Sequence[int],
        late_count: int = 0,
        skipped_count: int = 0,
    ) -> bool:
        """Move the cursor and record ``fire_ms`` as pending, in one compare-and-set.

        False, changing nothing, unless the schedule is at ``revision`` with
        its cursor at ``expected_cursor_ms`` and no pending fires: another
        replica got there first or the schedule changed.
        """

    async def confirm_schedule_fires(self, schedule_id: str, *, fire_ms: Sequence[int]) -> bool:
        """Clear the pending fires once published, if they are still ``fire_ms``.

        A save of the schedule in between does not matter: claimed fires
        stay claimed across revisions.
        """


async def open_store(url: str) -> Store:
    """Open the store a URL names: ``sqlite:///path/to/file.db``.

    As in SQLAlchemy, the path follows ``sqlite:///``: relative as written,
    absolute with a fourth slash (``sqlite:////var/lib/is.db``).

    Raises ``StoreUnavailableError`` for a scheme this build cannot serve.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from iscore.stores.sqlite import SqliteStore

        store = SqliteStore.from_url(url)
        await store.open()
        return store

    if scheme in ("mongodb", "mongodb+srv"):
        raise StoreUnavailableError(
            "The MongoDB store backend is not available in this build; use a "
            "sqlite:///path/to/file.db store URL."
        )
    raise StoreUnavailableError(
        # The URL itself may hold credentials, so only its scheme is named.
        f"Store URL scheme {scheme!r} is not supported; expected sqlite:///path/to/file.db."
    )
