"""Run a step file locally, without services, the way production runs it.

Input data and saved data pass through the codec as between real steps, so
a value that would not survive production fails here too. The pytest
plugin (``iscore.runtime.pytest_plugin``) wraps these as fixtures.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iscore import codec
from iscore.errors import IscoreError
from iscore.runtime.execution import run_attempt
from iscore.runtime.invocation import LogRecord, StepInput, StepInvocation

__all__ = ["StepRunResult", "StepRunner", "SyncPackStepRunner", "SyncPackError", "run_step"]

# Entry keys the harness (and the manual) treat as the step's own, not parameters.
_ENTRY_KEYS = ("name", "file")


class SyncPackError(IscoreError):
    """A SyncPack step named in a harness entry cannot be found."""

    code = "syncpack_not_found"


@dataclass(slots=True)
class StepRunResult:
    """What one local run of a step produced.

    ``data`` is the saved data after a codec round trip (None when nothing
    was saved); ``exception`` is the exception step code raised, with
    ``error_type``, ``error`` and ``traceback`` as production reports them.
    """

    saved: bool
    data: Any
    logs: list[LogRecord]
    exception: BaseException | None = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the step ran without raising."""
        return self.exception is None

    def messages(self, level: str | None = None) -> list[str]:
        """Return logged messages, only those at ``level`` when given."""
        return [r.message for r in self.logs if level is None or r.level == level]

    def raise_for_error(self) -> None:
        """Raise the step's exception again if it failed."""
        if self.exception is not None:
            raise self.exception


def _read_source(step: str | os.PathLike[str]) -> tuple[str, str]:
    """Return ``(source, file)`` for a step file path."""
    path = Path(step)
    if path.suffix != ".py" or not path.is_file():
        raise FileNotFoundError(
            f"Step file {str(path)!r} does not exist or does not end in '.py'; pass the path "
            "of a step file, or its text with source=."
        )
    return path.read_text(encoding="utf-8"), path.stem


def _round_trip(value: Any) -> Any:
    return codec.decode(codec.encode(value))


def run_step(
    path: str | os.PathLike[str] | None = None,
    *,
    source: str | None = None,
    file: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    name: str | None = None,
    app_variables: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    input_parameters: Mapping[str, Mapping[str, Any]] | None = None,
    on_log: Callable[[LogRecord], None] | None = None,
) -> StepRunResult:
    """Run the step file at ``path`` (or ``source`` named ``file``) once.

    ``parameters`` are the free keys of the step's entry and ``name`` its
    name (default: the file name). ``inputs`` maps previous step names to
    the data they saved, in application order; ``input_parameters`` gives
    those steps' entries for ``get_parameter_from_previous_step``. Step
    failures are returned in the result, not raised.
    """
    if source is None:
        if path is None:
            raise TypeError("run_step needs a step file path or source=; pass one of them.")
        source, file_from_path = _read_source(path)
        file = file or file_from_path
    if not file:
        raise TypeError("run_step with source= needs file=, the step class name; pass it.")
    entry = {"name": name or file, "file": file, **(parameters or {})}
    step_inputs = tuple(
        StepInput(
            step_name=step_name,
            data=_round_trip(data),
            parameters=dict((input_parameters or {}).get(step_name, {})),
        )
        for step_name, data in (inputs or {}).items()
    )
    invocation = StepInvocation(
        source=source,
        file=file,
        entry=entry,
        app_variables=dict(app_variables or {}),
        configuration=dict(configuration or {}),
        inputs=step_inputs,
        application="local",
        run_id="local",
        task_id="local",
    )
    attempt = run_attempt(invocation, on_log=on_log)
    outcome = attempt.outcome
    data = codec.decode(attempt.data_bytes) if attempt.data_bytes is not None else None
    return StepRunResult(
        saved=outcome.saved,
        data=data,
        logs=outcome.logs,
        exception=attempt.exception,
        error_type=outcome.error_type,
        error=outcome.error,
        traceback=outcome.traceback,
    )


@dataclass(slots=True)
class StepRunner:
    """Runs step files with shared application variables and configuration.

    ``run`` takes the arguments of ``run_step``; ``last`` keeps the most
    recent result.
    """

    app_variables: dict[str, Any] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    last: StepRunResult | None = None

    def run(self, path: str | os.PathLike[str] | None = None, **options: Any) -> StepRunResult:
        """Run one step; see ``run_step`` for ``options``."""
        options.setdefault("app_variables", self.app_variables)
        options.setdefault("configuration", self.configuration)
        self.last = run_step(path, **options)
        return self.last


@dataclass(slots=True)
class SyncPackStepRunner:
    """Runs steps of an installed SyncPack from application-style entries.

    ``data_in`` maps previous step names to the data they saved; every run
    receives them as its inputs. ``run`` returns what the step saved and
    raises the step's exception when it failed; ``last`` keeps the full
    result (logs included).
    """

    data_in: dict[str, Any] = field(default_factory=dict)
    app_variables: dict[str, Any] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    last: StepRunResult | None = None

    def run(self, entry: Mapping[str, Any]) -> Any:
        """Run the step ``entry`` describes (``name``, ``file``, ``syncpack``, parameters).

        Imports package ``entry["syncpack"]`` and runs ``steps/<file>.py``
        next to its ``__init__``. Raises ``SyncPackError`` when the package
        or the step file cannot be found.
        """
        file = str(entry.get("file", ""))
        path = _syncpack_step_path(str(entry.get("syncpack", "")), file)
        parameters = {key: value for key, value in entry.items() if key not in _ENTRY_KEYS}
        self.last = run_step(
            path,
            file=file,
            name=str(entry.get("name") or file),
            parameters=parameters,
            app_variables=self.app_variables,
            configuration=self.configuration,
            inputs=self.data_in,
        )
        self.last.raise_for_error()
        return self.last.data


def _syncpack_step_path(syncpack: str, file: str) -> Path:
    if not syncpack or not file:
        raise SyncPackError(
            "Harness entry needs 'syncpack' and 'file' keys; write them like the "
            "application entry, e.g. {'name': 'ds1', 'file': 'MyStep', 'syncpack': 'my_pack'}."
        )
    try:
        package = importlib.import_module(syncpack)
    except ImportError as err:
        raise SyncPackError(
            f"SyncPack {syncpack!r} cannot be imported ({err}); install it or put its "
            "parent folder on sys.path."
        ) from err
    package_file = getattr(package, "__file__", None)
    if package_file is None:
        raise SyncPackError(
            f"SyncPack {syncpack!r} has no __init__.py; add one so its folder can be found."
        )
    path = Path(package_file).parent / "steps" / f"{file}.py"
    if not path.is_file():
        raise SyncPackError(
            f"SyncPack {syncpack!r} has no step file {str(path)!r}; check the entry's 'file'."
        )
    return path
