"""Variable substitution in step parameter values (MANUAL-NOTES 15).

A small hand-written scanner reads ``${...}`` references; nothing in a
parameter value is ever evaluated as Python or passed to a format engine.
Resolved values are not scanned again, so data holding ``${...}`` text
cannot reach configuration values or step functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from iscore.errors import IscoreError

__all__ = ["SubstitutionError", "SubstitutionScope", "substitute"]

# Deepest ``${...}`` nesting one value may hold; deeper text is refused
# instead of exhausting the parser's recursion.
MAX_NESTING = 32

_OPEN = "${"
_ESCAPED_OPEN = "$${"
_CONFIG = "config."
_APPVAR = "appvar."
_STEPFUNC = ("stepfunc.", "step_func.")


class SubstitutionError(IscoreError):
    """A ``${...}`` reference cannot be resolved or is malformed.

    ``name`` is the reference as written between the braces (for example
    ``config.host``), or the whole text when it is malformed.
    """

    code = "substitution_failed"

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True, slots=True)
class SubstitutionScope:
    """Where references resolve.

    ``data`` lists ``(label, value)`` sources searched in order for plain
    ``${name}`` references; only dict values are searched and ``label``
    (such as ``"step 'Fetch'"``) appears in errors. ``step`` owns the
    methods ``${stepfunc.fn ...}`` may call.
    """

    data: Sequence[tuple[str, Any]] = ()
    configuration: Mapping[str, Any] = field(default_factory=dict)
    app_variables: Mapping[str, Any] = field(default_factory=dict)
    step: object | None = None


@dataclass(frozen=True, slots=True)
class _Reference:
    """``${name}`` where the name itself may hold nested references."""

    name: tuple[_Part, ...]
    text: str


@dataclass(frozen=True, slots=True)
class _Call:
    """``${stepfunc.fn arg ...}``; each argument is its own template."""

    function: str
    args: tuple[tuple[_Part, ...], ...]
    text: str


_Part = str | _Reference | _Call


def substitute(value: Any, *, scope: SubstitutionScope) -> Any:
    """Return ``value`` with every ``${...}`` reference resolved.

    Strings are templates; dicts, lists and tuples are walked (dict keys are
    left alone); other values come back unchanged. A string that is exactly
    one reference takes the referenced value's type, otherwise references
    are rendered with ``str()``. ``$${`` writes a literal ``${``. Raises
    ``SubstitutionError`` for unknown names, refused names and malformed
    text.
    """
    if isinstance(value, str):
        return _render(_parse(value, 0), scope)
    if isinstance(value, dict):
        return {key: substitute(item, scope=scope) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, scope=scope) for item in value]
    if isinstance(value, tuple):
        return tuple(substitute(item, scope=scope) for item in value)
    return value


def _parse(text: str, depth: int) -> tuple[_Part, ...]:
    if depth > MAX_NESTING:
        raise SubstitutionError(
            f"Parameter text {text!r} nests '${{' deeper than {MAX_NESTING} levels; "
            "simplify it.",
            name=text,
        )
    parts: list[_Part] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        if text.startswith(_ESCAPED_OPEN, index):
            literal.append(_OPEN)
            index += len(_ESCAPED_OPEN)
            continue
        if not text.startswith(_OPEN, index):
            literal.append(text[index])
            index += 1
            continue
        end = _closing_brace(text, index)
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_parse_expression(text[index + 2 : end], depth))
        index = end + 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` at ``start``, skipping nested ones."""
    open_count = 0
    index = start
    while index < len(text):
        if text.startswith(_ESCAPED_OPEN, index):
            index += len(_ESCAPED_OPEN)
            continue
        if text.startswith(_OPEN, index):
            open_count += 1
            index += len(_OPEN)
            continue
        if text[index] == "}":
            open_count -= 1
            if open_count == 0:
                return index
        index += 1
    raise SubstitutionError(
        f"Parameter text {text!r} opens '${{' at position {start} without a closing '}}'; "
        "close it, or write '$${' for a literal '${'.",
        name=text,
    )


def _parse_expression(body: str, depth: int) -> _Reference | _Call:
    text = body.strip()
    if not text:
        raise SubstitutionError("Parameter text holds an empty '${}'; name a variable.", name="")
    for prefix in _STEPFUNC:
        if text.startswith(prefix):
            head, *args = _split_arguments(text)
            function = head[len(prefix) :]
            _check_public(function, text, "a step function")
            parsed = tuple(_parse(arg, depth + 1) for arg in args)
            return _Call(function=function, args=parsed, text=text)
    return _Reference(name=_parse(text, depth + 1), text=text)


def _split_arguments(text: str) -> list[str]:
    """Split on whitespace outside nested ``${...}``."""
    tokens: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        if text.startswith(_ESCAPED_OPEN, index):
            current.append(_ESCAPED_OPEN)
            index += len(_ESCAPED_OPEN)
            continue
        if text.startswith(_OPEN, index):
            end = _closing_brace(text, index)
            current.append(text[index : end + 1])
            index = end + 1
            continue
        char = text[index]
        if char.isspace():
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
        index += 1
    if current:
        tokens.append("".join(current))
    return tokens


def _check_public(name: str, text: str, kind: str) -> None:
    if not name or name.startswith("_") or any(p.startswith("_") for p in name.split(".")):
        raise SubstitutionError(
            f"Variable '${{{text}}}' names {kind} {name!r}; names that are empty or start "
            "with '_' are refused. Use a public name.",
            name=text,
        )


def _render(parts: tuple[_Part, ...], scope: SubstitutionScope) -> Any:
    if len(parts) == 1 and not isinstance(parts[0], str):
        return _resolve(parts[0], scope)
    return _render_text(parts, scope)


def _render_text(parts: tuple[_Part, ...], scope: SubstitutionScope) -> str:
    return "".join(part if isinstance(part, str) else str(_resolve(part, scope)) for part in parts)


def _resolve(part: _Reference | _Call, scope: SubstitutionScope) -> Any:
    if isinstance(part, _Call):
        return _call(part, scope)
    name = _render_text(part.name, scope).strip()
    if name.startswith(_CONFIG):
        key = name[len(_CONFIG) :]
        _check_public(key, name, "a configuration variable")
        return _lookup(name, key, [("the run's configuration", scope.configuration)])
    if name.startswith(_APPVAR):
        key = name[len(_APPVAR) :]
        _check_public(key, name, "an application variable")
        return _lookup(name, key, [("the application variables", scope.app_variables)])
    return _lookup(name, name, scope.data)


_MISSING = object()


def _lookup(text: str, key: str, sources: Sequence[tuple[str, Any]]) -> Any:
    for _, source in sources:
        found = _find_key(source, key)
        if found is not _MISSING:
            return found
    searched = ", ".join(label for label, _ in sources) or "nothing (no previous step data)"
    raise SubstitutionError(
        f"Variable '${{{text}}}' is not defined; looked for {key!r} in {searched}. "
        "Define it there or fix the name.",
        name=text,
    )


def _find_key(source: Any, key: str) -> Any:
    """``key`` in a mapping, else its dotted parts walking nested mappings."""
    if not isinstance(source, Mapping):
        return _MISSING
    if key in source:
        return source[key]
    if "." not in key:
        return _MISSING
    current: Any = source
    for part in key.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _call(call: _Call, scope: SubstitutionScope) -> Any:
    method: Callable[..., Any] | None = getattr(scope.step, call.function, None)
    if scope.step is None or not callable(method):
        raise SubstitutionError(
            f"Variable '${{{call.text}}}' calls {call.function!r}, which is not a method "
            "of the current step; define it in the step class.",
            name=call.text,
        )
    args = [_render(arg, scope) for arg in call.args]
    return method(*args)
