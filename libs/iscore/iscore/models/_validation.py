"""Field checks shared by the document models, and their error messages.

Pydantic's own messages name neither the field path in the user's terms nor
the fix, so the checks here raise ``PydanticCustomError`` with an
"expected ..." phrase, and ``describe_validation_error`` turns the first
problem of a ``ValidationError`` into one sentence and a field path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

# Application and configuration names: they end up in URLs and file names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,128}")

# Error type used by every check in this module; its message is the
# "expected ..." phrase and ``ctx["hint"]`` the optional fix.
EXPECTED = "expected"

# What pydantic's built-in error types mean, in our phrasing.
_EXPECTED_BY_TYPE = {
    "missing": "expected a value, found nothing; add it",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "literal_error": "expected one of {expected}",
    "too_short": "expected at least {min_length} item(s)",
    "string_too_short": "expected at least {min_length} character(s)",
    "string_too_long": "expected at most {max_length} character(s)",
}


def expected(phrase: str, hint: str = "") -> PydanticCustomError:
    """Build the error a check raises: ``phrase`` starts with "expected"."""
    return PydanticCustomError(EXPECTED, phrase, {"hint": hint} if hint else None)


def to_field_path(loc: Sequence[int | str]) -> str:
    """Spell a pydantic location as users write it: ``steps[2].retry_max``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif path:
            path += f".{part}"
        else:
            path = str(part)
    return path


def describe_validation_error(err: ValidationError) -> tuple[str, str]:
    """Return ``(message, field)`` for the first problem in ``err``.

    The message reads ``<field>: expected ..., found <value>[; fix].`` and
    mentions how many further problems there are.
    """
    problems = err.errors(include_url=False)
    first = problems[0]
    field = to_field_path(first["loc"]) or "document"
    ctx = first.get("ctx") or {}

    if first["type"] == EXPECTED:
        phrase = first["msg"]
    else:
        template = _EXPECTED_BY_TYPE.get(first["type"])
        phrase = template.format(**ctx) if template else first["msg"][:1].lower() + first["msg"][1:]

    message = f"{field}: {phrase}"
    if first["type"] != "missing":
        message += f", found {_shown(first.get('input'))}"
    if ctx.get("hint"):
        message += f"; {ctx['hint']}"
    if len(problems) > 1:
        message += f" ({len(problems) - 1} more problem(s) after this one)"
    return message + ".", field


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(minimum: int) -> Callable[[Any], int]:
    """Accept an integer (or its decimal text) that is at least ``minimum``."""

    def check(value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise expected(f"expected an integer >= {minimum}")
        return value

    return check


def check_number(*, minimum: float, inclusive: bool) -> Callable[[Any], float]:
    """Accept a number of seconds above (or at) ``minimum``."""
    sign = ">=" if inclusive else ">"

    def check(value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise expected(f"expected a number {sign} {minimum:g}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise expected(f"expected a number {sign} {minimum:g}")
        if value < minimum or (not inclusive and value == minimum):
            raise expected(f"expected a number {sign} {minimum:g}")
        return value

    return check


def check_bool(value: Any) -> bool:
    """Accept true/false, also spelled as the text "True" or "false"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise expected("expected true or false")


def check_name(value: Any) -> str:
    """Accept an application or configuration name."""
    if not isinstance(value, str):
        raise expected("expected a string")
    if not NAME_PATTERN.fullmatch(value):
        raise expected(
            "expected 1 to 128 letters, digits, '_', '-' or '.'",
            "remove spaces and other characters",
        )
    return value


def check_text(value: Any) -> str:
    """Accept text; numbers are turned into text (``"version": 1.2``)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise expected("expected a string")
    return str(value)
