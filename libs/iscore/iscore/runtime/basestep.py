"""``BaseStep``: the class every step file subclasses (manual, "ipaascore.BaseStep class").

Step files often write ``def __init__(self): pass`` without calling
``super().__init__()`` (MANUAL-NOTES 10). So no feature depends on
``BaseStep.__init__``: the executor installs a ``StepContext`` in a context
variable before instantiating the class, ``__new__`` attaches it to the
instance, and every method reads it from there.
"""

from __future__ import annotations

import contextvars
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ipaascommon.ipaas_exceptions import (
    DataNotAvailableException,
    IncompatibleDataException,
    InvalidStepParameter,
    MissingRequiredStepParameter,
)
from iscore import codec
from iscore.models.step import StepParameter
from iscore.runtime.invocation import LogRecord, StepInput, StepInvocation
from iscore.substitution import SubstitutionScope, substitute

__all__ = [
    "BaseStep",
    "StepContext",
    "StepLogger",
    "attach_context",
    "current_context",
    "install_context",
    "uninstall_context",
]

# Instance attribute holding the context; name-mangled style so step code
# does not collide with it by accident.
_CONTEXT_ATTRIBUTE = "_BaseStep__context"

# Marks "no default given" for cache_read, where None is a valid default.
_NO_DEFAULT: Any = object()

_installed: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "iscore_step_context", default=None
)


class StepLogger:
    """``self.logger`` in step code: records lines into the step's outcome.

    Messages are formatted like the ``logging`` module (``msg % args``).
    ``exception`` and ``exc_info=True`` append the current traceback.
    """

    def __init__(
        self, records: list[LogRecord], on_log: Callable[[LogRecord], None] | None
    ) -> None:
        self._records = records
        self._on_log = on_log

    def debug(self, msg: object, *args: object, exc_info: bool = False) -> None:
        self._write("debug", msg, args, exc_info)

    def info(self, msg: object, *args: object, exc_info: bool = False) -> None:
        self._write("info", msg, args, exc_info)

    def warning(self, msg: object, *args: object, exc_info: bool = False) -> None:
        self._write("warning", msg, args, exc_info)

    def error(self, msg: object, *args: object, exc_info: bool = False) -> None:
        self._write("error", msg, args, exc_info)

    def critical(self, msg: object, *args: object, exc_info: bool = False) -> None:
        self._write("critical", msg, args, exc_info)

    def exception(self, msg: object, *args: object, exc_info: bool = True) -> None:
        self._write("error", msg, args, exc_info)

    def _write(self, level: str, msg: object, args: tuple[object, ...], exc_info: bool) -> None:
        message = _format_message(msg, args)
        if exc_info:
            message = f"{message}\n{traceback.format_exc().rstrip()}"
        record = LogRecord(level=level, message=message, at=time.time())
        self._records.append(record)
        if self._on_log is not None:
            self._on_log(record)


def _format_message(msg: object, args: tuple[object, ...]) -> str:
    text = str(msg)
    if not args:
        return text
    try:
        return text % args
    except (TypeError, ValueError):
        # A log call must not fail the step; show the arguments as given.
        return " ".join([text, *(repr(arg) for arg in args)])


@dataclass(slots=True)
class StepContext:
    """Per-attempt state of one step instance: its invocation and results."""

    invocation: StepInvocation
    on_log: Callable[[LogRecord], None] | None = None
    parameters: dict[str, StepParameter] = field(default_factory=dict)
    logs: list[LogRecord] = field(default_factory=list)
    saved: bool = False
    saved_data: Any = None
    saved_bytes: bytes | None = None
    report_rows: list[dict[str, Any]] = field(default_factory=list)
    cache_writes: dict[str, bytes] = field(default_factory=dict)
    logger: StepLogger = field(init=False)

    def __post_init__(self) -> None:
        self.logger = StepLogger(self.logs, self.on_log)

    @property
    def step_name(self) -> str:
        entry = self.invocation.entry
        return str(entry.get("name") or self.invocation.file)


def install_context(context: StepContext) -> contextvars.Token[StepContext | None]:
    """Make ``context`` the one the next ``BaseStep`` instance attaches to.

    Pass the returned token to ``uninstall_context`` once the instance exists.
    """
    return _installed.set(context)


def uninstall_context(token: contextvars.Token[StepContext | None]) -> None:
    """Undo ``install_context``."""
    _installed.reset(token)


def current_context(step: BaseStep) -> StepContext:
    """Return the context of ``step``, creating a standalone one if it has none.

    A standalone context (a step class instantiated outside the executor,
    for example in a plain unit test) has an entry naming the class and no
    inputs, variables or configuration.
    """
    context: StepContext | None = vars(step).get(_CONTEXT_ATTRIBUTE)
    if context is None:
        context = _standalone_context(type(step))
        attach_context(step, context)
    return context


def attach_context(step: BaseStep, context: StepContext) -> None:
    """Bind ``context`` to ``step``, replacing any it had."""
    object.__setattr__(step, _CONTEXT_ATTRIBUTE, context)


def _standalone_context(cls: type) -> StepContext:
    name = cls.__name__
    invocation = StepInvocation(source="", file=name, entry={"name": name, "file": name})
    return StepContext(invocation=invocation)


class BaseStep:
    """Base class of every step; subclasses define ``__init__`` and ``execute``.

    ``friendly_name``, ``description`` and ``version`` describe the step in
    listings. Methods raise ``ipaascommon.ipaas_exceptions`` errors.
    """

    friendly_name: str = ""
    description: str = ""
    version: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> BaseStep:
        instance = super().__new__(cls)
        attach_context(instance, _installed.get() or _standalone_context(cls))
        return instance

    def __init__(self) -> None:
        """Do nothing; subclasses need not call it (MANUAL-NOTES 10)."""

    def execute(self) -> None:
        """Run the step; every step file overrides it."""
        raise NotImplementedError(
            f"Step class {type(self).__name__!r} does not define execute(); add the method."
        )

    @property
    def logger(self) -> StepLogger:
        """The step log, with the ``logging`` level methods and ``exception``."""
        return current_context(self).logger

    def get_name(self) -> str:
        """Return the step's name in the application (its entry's ``name``)."""
        return current_context(self).step_name

    def get_app_variable(self, name: str) -> Any:
        """Return the value of application variable ``name``.

        Raises ``InvalidStepParameter`` when the application defines no such
        variable.
        """
        context = current_context(self)
        variables = context.invocation.app_variables
        if name not in variables:
            known = ", ".join(repr(key) for key in variables) or "none"
            raise InvalidStepParameter(
                f"Step {context.step_name!r} asked for application variable {name!r}, which "
                f"the application does not define (defined: {known}); add it to app_variables.",
                step=context.step_name,
                parameter=name,
            )
        return variables[name]

    def get_available_previous_step_input_positions(self) -> list[tuple[str, int]]:
        """Return ``(step name, position)`` of every input, positions from 0.

        Inputs are the steps whose ``output_to`` names this step, in the
        order they appear in the application (MANUAL-NOTES 12).
        """
        inputs = current_context(self).invocation.inputs
        return [(item.step_name, position) for position, item in enumerate(inputs)]

    def get_data_from_step_by_name(self, step_name: str) -> Any:
        """Return the data saved by previous step ``step_name``.

        Raises ``DataNotAvailableException`` when that step does not feed
        this one or saved nothing.
        """
        return _data_of(current_context(self), _input_named(current_context(self), step_name))

    def get_data_from_step_by_order(self, pos: int) -> Any:
        """Return the data of the input at position ``pos`` (from 0).

        Raises ``DataNotAvailableException`` for a position outside the
        inputs or an input that saved nothing.
        """
        context = current_context(self)
        inputs = context.invocation.inputs
        if type(pos) is not int or not 0 <= pos < len(inputs):
            raise DataNotAvailableException(
                f"Step {context.step_name!r} has no input at position {pos!r}; positions run "
                f"from 0 to {len(inputs) - 1} (see get_available_previous_step_input_positions).",
                step=context.step_name,
                source=repr(pos),
            )
        return _data_of(context, inputs[pos])

    def get_parameter(self, param_name: str, lookup_data: Any = None) -> Any:
        """Return parameter ``param_name`` with ``${...}`` references resolved.

        The value comes from the step's entry, else from the declared
        ``default_value``. ``lookup_data`` (a dict) is searched before the
        data of previous steps for ``${name}`` references. Raises
        ``MissingRequiredStepParameter`` for an absent required parameter,
        ``InvalidStepParameter`` for a name neither declared nor set, and
        ``SubstitutionError`` for an unresolvable reference.
        """
        context = current_context(self)
        entry = context.invocation.entry
        declared = context.parameters.get(param_name)
        if param_name in entry:
            value = entry[param_name]
        elif declared is not None and declared.required:
            raise _missing(context, [param_name])
        elif declared is not None:
            value = declared.default_value
        else:
            raise InvalidStepParameter(
                f"Step {context.step_name!r} asked for parameter {param_name!r}, which is "
                "neither declared with new_step_parameter nor set on the step; declare it "
                "or set it in the application.",
                step=context.step_name,
                parameter=param_name,
            )
        return substitute(value, scope=_scope(self, context, lookup_data))

    def get_parameter_from_previous_step(self, parameter_name: str, step_name: str) -> Any:
        """Return parameter ``parameter_name`` as set on previous step ``step_name``.

        The value is read from that step's entry as written, without
        substitution. Raises ``DataNotAvailableException`` when the step
        does not feed this one, ``InvalidStepParameter`` when its entry
        does not set the parameter.
        """
        context = current_context(self)
        source = _input_named(context, step_name)
        if parameter_name not in source.parameters:
            raise InvalidStepParameter(
                f"Previous step {step_name!r} does not set parameter {parameter_name!r}; "
                "set it on that step in the application.",
                step=context.step_name,
                parameter=parameter_name,
            )
        return source.parameters[parameter_name]

    def join_previous_step_data(self, data_from: Iterable[str] | str | None = None) -> Any:
        """Return the data of previous steps joined into one value (MANUAL-NOTES 13).

        One input comes back as it is; lists are concatenated, dicts merged
        in application order, values of any other single type gathered in
        a list; no input gives ``{}``. ``data_from`` restricts the join to
        the named steps. Raises ``IncompatibleDataException`` for mixed
        types and ``DataNotAvailableException`` for a named step that does
        not feed this one.
        """
        context = current_context(self)
        if data_from is None:
            sources = [item for item in context.invocation.inputs if item.has_data]
        else:
            names = [data_from] if isinstance(data_from, str) else list(data_from)
            sources = [_input_named(context, name) for name in names]
        pairs = [(item.step_name, _data_of(context, item)) for item in sources]
        return _join(context, pairs)

    def new_step_parameter(
        self,
        name: str = "",
        description: str = "",
        sample_value: Any = "",
        default_value: Any = None,
        required: bool | str = False,
    ) -> None:
        """Declare parameter ``name``; call it in ``__init__``.

        ``required`` also accepts the manual's strings ``"True"``/``"False"``.
        Declaring a name again replaces the earlier declaration.
        """
        if isinstance(required, str):
            required = required.strip().lower() == "true"
        parameter = StepParameter(
            name=name,
            description=description,
            sample_value=sample_value,
            default_value=default_value,
            required=bool(required),
        )
        current_context(self).parameters[name] = parameter

    def save_data_for_next_step(self, data: Any) -> None:
        """Save ``data`` for the steps named in this step's ``output_to``.

        ``data`` is encoded at once, so later changes to it are not saved;
        saving again replaces the earlier data. Raises
        ``UnsupportedDataError`` naming the type and its place for a value
        the codec cannot keep (MANUAL-NOTES 14).
        """
        encoded = codec.encode(data)
        context = current_context(self)
        context.saved = True
        context.saved_data = data
        context.saved_bytes = encoded

    def add_report_row(self, row: dict[str, Any]) -> None:
        """Add one row to the run's report (applications with ``generate_report``).

        ``row`` maps column names (text) to JSON scalars (text, numbers,
        booleans, None), for example ``{"Device Name": "rtr1", "Status":
        "New"}``. Rows count only when the attempt succeeds. Raises
        ``InvalidStepParameter`` for another shape or past
        ``MAX_ROWS_PER_STEP`` rows.
        """
        context = current_context(self)
        _check_report_row(context, row)
        context.report_rows.append(dict(row))

    def cache_write(self, cache_id: str, value: Any, ttl_s: float | None = None) -> None:
        """Save ``value`` (JSON-like) as cache entry ``cache_id``, for ``ttl_s`` seconds.

        Entries are stored when the attempt succeeds and are then read by
        ``cache_read`` in any step and by ``GET /api/v1/cache/{cache_id}``;
        without ``ttl_s`` an entry lives 30 days. Raises ``CacheError`` at
        once for an invalid id, value or ttl.
        """
        from iscore.cache import check_cache_id, to_entry

        context = current_context(self)
        context.cache_writes[check_cache_id(cache_id)] = to_entry(value, ttl_s)

    def cache_read(self, cache_id: str, default: Any = _NO_DEFAULT) -> Any:
        """Return the value of cache entry ``cache_id``.

        This step's own ``cache_write`` wins; otherwise the entry is read
        from the cache bucket (a NATS request from the step's process, at
        most 5 s). Returns ``default`` when given and the entry is absent or
        expired, else raises ``CacheNotFoundError``; ``CacheError`` when the
        cache cannot be reached.
        """
        from iscore.cache import CacheNotFoundError, check_cache_id, from_entry
        from iscore.runtime.cache_reader import read_remote

        context = current_context(self)
        check_cache_id(cache_id)
        if cache_id in context.cache_writes:
            decoded = from_entry(context.cache_writes[cache_id])
        else:
            decoded = read_remote(context.invocation.cache_url, cache_id)
        if decoded is not None:
            return decoded[0]
        if default is not _NO_DEFAULT:
            return default
        raise CacheNotFoundError(cache_id)

    def validate_parameter_values(self) -> None:
        """Check every required parameter is set on the step's entry.

        Raises ``MissingRequiredStepParameter`` listing all missing names.
        """
        context = current_context(self)
        entry = context.invocation.entry
        missing = [
            name for name, declared in context.parameters.items()
            if declared.required and name not in entry
        ]
        if missing:
            raise _missing(context, missing)


def _check_report_row(context: StepContext, row: Any) -> None:
    from iscore.reports import MAX_ROW_COLUMNS, MAX_ROWS_PER_STEP

    scalar = str | int | float | bool | None
    if (
        not isinstance(row, dict)
        or len(row) > MAX_ROW_COLUMNS
        or not all(isinstance(k, str) and isinstance(v, scalar) for k, v in row.items())
    ):
        raise InvalidStepParameter(
            f"Step {context.step_name!r} added a report row of type {type(row).__name__!r}; "
            f"a row is a dict of at most {MAX_ROW_COLUMNS} text keys with text, number, "
            "boolean or None values.",
            step=context.step_name,
            parameter="row",
        )
    if len(context.report_rows) >= MAX_ROWS_PER_STEP:
        raise InvalidStepParameter(
            f"Step {context.step_name!r} added more than {MAX_ROWS_PER_STEP} report rows; "
            "summarise them or split the work over several steps.",
            step=context.step_name,
            parameter="row",
        )


def _input_named(context: StepContext, step_name: str) -> StepInput:
    for item in context.invocation.inputs:
        if item.step_name == step_name:
            return item
    names = ", ".join(repr(item.step_name) for item in context.invocation.inputs) or "none"
    raise DataNotAvailableException(
        f"Step {context.step_name!r} has no data from step {step_name!r}, which does not "
        f"feed it (inputs: {names}); add {context.step_name!r} to that step's output_to.",
        step=context.step_name,
        source=step_name,
    )


def _data_of(context: StepContext, item: StepInput) -> Any:
    if not item.has_data:
        raise DataNotAvailableException(
            f"Step {context.step_name!r} has no data from step {item.step_name!r}, which "
            "saved none; call save_data_for_next_step in that step.",
            step=context.step_name,
            source=item.step_name,
        )
    return item.data


def _join(context: StepContext, pairs: list[tuple[str, Any]]) -> Any:
    if not pairs:
        return {}
    if len(pairs) == 1:
        return pairs[0][1]
    kinds = {type(data) for _, data in pairs}
    if len(kinds) > 1:
        found = ", ".join(f"{name!r} ({type(data).__name__})" for name, data in pairs)
        raise IncompatibleDataException(
            f"Step {context.step_name!r} cannot join data of different types from steps "
            f"{found}; read them one by one with get_data_from_step_by_name.",
            step=context.step_name,
        )
    kind = kinds.pop()
    if kind is list:
        return [item for _, data in pairs for item in data]
    if kind is dict:
        merged: dict[Any, Any] = {}
        for _, data in pairs:
            merged.update(data)
        return merged
    return [data for _, data in pairs]


def _missing(context: StepContext, names: list[str]) -> MissingRequiredStepParameter:
    listed = ", ".join(repr(name) for name in names)
    noun = "parameter" if len(names) == 1 else "parameters"
    verb = "is" if len(names) == 1 else "are"
    return MissingRequiredStepParameter(
        f"Step {context.step_name!r} needs {noun} {listed}, which {verb} not set; "
        "set it on the step in the application.",
        step=context.step_name,
        parameters=tuple(names),
    )


def _scope(step: BaseStep, context: StepContext, lookup_data: Any) -> SubstitutionScope:
    invocation = context.invocation
    data: list[tuple[str, Any]] = []
    if isinstance(lookup_data, dict):
        data.append(("lookup_data", lookup_data))
    data.extend(
        (f"data of step {item.step_name!r}", item.data)
        for item in invocation.inputs
        if item.has_data and isinstance(item.data, dict)
    )
    return SubstitutionScope(
        data=data,
        configuration=invocation.configuration,
        app_variables=invocation.app_variables,
        step=step,
    )
