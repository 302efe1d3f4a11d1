"""The bytes form of data a step saves for the next step (MANUAL-NOTES 14).

Values are msgpack with a few extension types, so tuples, sets, complex
numbers, big integers and datetimes come back as themselves. Nothing is
pickled: decoding never runs code, and hostile bytes fail with
``CorruptDataError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from datetime import date, datetime
from itertools import islice
from typing import Any

import msgpack

from iscore.errors import IscoreError

__all__ = ["SUPPORTED_TYPES", "CorruptDataError", "UnsupportedDataError", "decode", "encode"]

# Names of the types a step may save, in the order error messages list them.
SUPPORTED_TYPES = (
    "None, bool, int, float, complex, str, bytes, tuple, list, set, frozenset, "
    "dict, datetime.datetime, datetime.date"
)

# Extension type codes. Containers (tuple, set, frozenset) are written as a
# msgpack array whose first item is an empty marker extension, so the packer
# and unpacker stay in C for their items instead of recursing through Python.
_TUPLE = 1
_SET = 2
_FROZENSET = 3
_COMPLEX = 4
_DATETIME = 5
_DATE = 6
_BIG_INT = 7

# Deepest container nesting, in levels: msgpack's packer refuses deeper
# values and its unpacker's fixed stack holds exactly this many.
MAX_DEPTH = 1024

_COMPLEX_FORMAT = struct.Struct(">dd")


class UnsupportedDataError(IscoreError):
    """A value holds something the codec cannot save.

    ``path`` locates the offending value inside the saved data (for example
    ``data['rows'][3]``) and ``type_name`` names its type.
    """

    code = "unsupported_data"

    def __init__(self, message: str, *, path: str, type_name: str) -> None:
        super().__init__(message)
        self.path = path
        self.type_name = type_name


class CorruptDataError(IscoreError):
    """Bytes handed to ``decode`` (or a wire reader) are not valid saved data."""

    code = "corrupt_data"


class _Marker:
    """Decoded form of a container marker; it never leaves ``decode``."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


class _Refused(Exception):
    """Raised inside the packer's default hook; carries the refused value."""

    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value


_TUPLE_MARK = msgpack.ExtType(_TUPLE, b"")
_SET_MARK = msgpack.ExtType(_SET, b"")
_FROZENSET_MARK = msgpack.ExtType(_FROZENSET, b"")
_MARKERS = {code: _Marker(code) for code in (_TUPLE, _SET, _FROZENSET)}


def _to_msgpack(value: Any) -> Any:
    kind = type(value)
    if kind is tuple:
        return [_TUPLE_MARK, *value]
    if kind is set:
        return [_SET_MARK, *value]
    if kind is frozenset:
        return [_FROZENSET_MARK, *value]
    if kind is int:
        size = (value.bit_length() + 8) // 8
        return msgpack.ExtType(_BIG_INT, value.to_bytes(size, "big", signed=True))
    if kind is complex:
        return msgpack.ExtType(_COMPLEX, _COMPLEX_FORMAT.pack(value.real, value.imag))
    if kind is datetime:
        return msgpack.ExtType(_DATETIME, value.isoformat().encode("ascii"))
    if kind is date:
        return msgpack.ExtType(_DATE, value.isoformat().encode("ascii"))
    raise _Refused(value)


def encode(value: Any, *, label: str = "data") -> bytes:
    """Return the bytes of ``value``, or refuse it at once.

    ``label`` names the value's root in error messages. ``bytearray`` and
    ``memoryview`` are saved as ``bytes``. Raises ``UnsupportedDataError``
    naming the type and where it sits, for any type outside
    ``SUPPORTED_TYPES``, strings that are not valid Unicode, and nesting
    deeper than ``MAX_DEPTH`` (or a value that contains itself).
    """
    try:
        return msgpack.packb(
            value, default=_to_msgpack, strict_types=True, use_bin_type=True, datetime=False
        )
    except _Refused as err:
        path = _find_path(value, label, lambda item: item is err.value)
        raise _unsupported(path, err.value) from None
    except UnicodeEncodeError:
        path = _find_path(value, label, _is_bad_str)
        message = (
            f"Value at {path} is a string that is not valid Unicode (it holds a lone "
            "surrogate), which cannot be saved for the next step; encode it to bytes "
            "with errors='surrogatepass' or clean it."
        )
        raise UnsupportedDataError(message, path=path, type_name="str") from None
    except ValueError as err:
        message = (
            f"Value {label} nests deeper than {MAX_DEPTH} levels or contains itself, "
            "which cannot be saved for the next step; flatten it."
        )
        raise UnsupportedDataError(message, path=label, type_name=type(value).__name__) from err


def _unsupported(path: str, value: object) -> UnsupportedDataError:
    name = type(value).__qualname__
    message = (
        f"Value at {path} has type {name!r}, which cannot be saved for the next step; "
        f"convert it to one of: {SUPPORTED_TYPES}."
    )
    return UnsupportedDataError(message, path=path, type_name=name)


def _is_bad_str(value: object) -> bool:
    if type(value) is not str:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _find_path(root: Any, label: str, matches: Callable[[object], bool]) -> str:
    """Walk ``root`` depth-first (only on the error path) to locate a value."""
    stack: list[tuple[str, Any]] = [(label, root)]
    seen: set[int] = set()
    while stack:
        path, value = stack.pop()
        if matches(value):
            return path
        if id(value) in seen:
            continue
        seen.add(id(value))
        stack.extend(reversed(list(_children(path, value))))
    return label


def _children(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            yield f"a key of {path}", key
            yield f"{path}[{key!r}]", item
    elif kind in (list, tuple):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item
    elif kind in (set, frozenset):
        for item in value:
            yield f"an element of {path}", item


def _from_ext(code: int, payload: bytes) -> Any:
    marker = _MARKERS.get(code)
    if marker is not None:
        return marker
    if code == _BIG_INT:
        return int.from_bytes(payload, "big", signed=True)
    if code == _COMPLEX:
        real, imag = _COMPLEX_FORMAT.unpack(payload)
        return complex(real, imag)
    if code == _DATETIME:
        return datetime.fromisoformat(payload.decode("ascii"))
    if code == _DATE:
        return date.fromisoformat(payload.decode("ascii"))
    raise ValueError(f"unknown extension type {code}")


def _from_array(items: list[Any]) -> Any:
    if not items or type(items[0]) is not _Marker:
        return items
    rest = islice(items, 1, None)
    code = items[0].code
    if code == _TUPLE:
        return tuple(rest)
    if code == _SET:
        return set(rest)
    return frozenset(rest)


def decode(data: bytes) -> Any:
    """Return the value whose bytes ``encode`` produced.

    Lengths inside ``data`` are bounded by its own size and nesting by
    msgpack's fixed unpack stack, so hostile input cannot allocate wildly.
    Raises ``CorruptDataError`` for anything that is not valid saved data.
    """
    try:
        return msgpack.unpackb(
            data,
            ext_hook=_from_ext,
            list_hook=_from_array,
            raw=False,
            strict_map_key=False,
            timestamp=0,
        )
    except (ValueError, TypeError, OverflowError, IndexError, struct.error) as err:
        raise CorruptDataError(
            f"Saved data of {len(data)} bytes cannot be decoded ({type(err).__name__}: {err}); "
            "it was not written by this codec or is damaged."
        ) from err
