from __future__ import annotations

import collections
import decimal
from datetime import date, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iscore import codec
from iscore.codec import CorruptDataError, UnsupportedDataError
from iscore.errors import IscoreError

offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
hashable_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**300)
    | st.floats(allow_nan=False)
    | st.complex_numbers(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes(timezones=st.none() | offsets)
    | st.dates()
)
hashables = st.recursive(
    hashable_scalars,
    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.frozensets(inner, max_size=4),
    max_leaves=10,
)
values = st.recursive(
    hashables,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=15,
)


def assert_same(left: Any, right: Any) -> None:
    assert type(left) is type(right)
    assert left == right
    if isinstance(left, datetime):
        assert left.utcoffset() == right.utcoffset()
    if isinstance(left, list | tuple):
        for a, b in zip(left, right, strict=True):
            assert_same(a, b)
    if isinstance(left, dict):
        assert [type(k) for k in left] == [type(k) for k in right]
        for key in left:
            assert_same(left[key], right[key])


@given(values)
@settings(max_examples=80, deadline=None)
def test_every_supported_value_comes_back_as_itself(value: Any) -> None:
    decoded = codec.decode(codec.encode(value))

    assert_same(decoded, value)


def test_integers_beyond_64_bits_keep_their_value() -> None:
    numbers = [2**64, -(2**64) - 1, 2**1000, -(2**63), 2**64 - 1]

    assert codec.decode(codec.encode(numbers)) == numbers


def test_aware_datetime_keeps_its_offset_and_naive_stays_naive() -> None:
    aware = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    naive = datetime(2024, 5, 1, 12, 30, 1, 500)

    back_aware, back_naive = codec.decode(codec.encode((aware, naive)))

    assert back_aware.utcoffset() == timedelta(hours=5, minutes=30)
    assert back_naive.tzinfo is None
    assert back_naive == naive


def test_dict_keys_that_are_not_strings_are_preserved() -> None:
    value = {1: "a", (2, "b"): {frozenset({3}): None}, b"k": 1.5, None: True}

    assert codec.decode(codec.encode(value)) == value


def test_tuple_and_list_stay_distinct_when_nested() -> None:
    value = [(1, [2, (3,)]), [(), []]]

    assert_same(codec.decode(codec.encode(value)), value)


def test_encode_refuses_decimal_naming_type_and_path() -> None:
    value = {"rows": [1, 2, 3, decimal.Decimal("1.5")]}

    with pytest.raises(UnsupportedDataError) as info:
        codec.encode(value)

    assert "data['rows'][3]" in str(info.value)
    assert "'Decimal'" in str(info.value)
    assert info.value.path == "data['rows'][3]"
    assert info.value.type_name == "Decimal"
    assert isinstance(info.value, IscoreError)


def test_encode_refuses_dict_subclasses_and_objects() -> None:
    with pytest.raises(UnsupportedDataError, match="OrderedDict"):
        codec.encode([collections.OrderedDict(a=1)])
    with pytest.raises(UnsupportedDataError, match="object"):
        codec.encode({"x": (1, object())})


def test_encode_names_a_refused_set_element_and_dict_key() -> None:
    with pytest.raises(UnsupportedDataError, match=r"an element of data\['s'\]"):
        codec.encode({"s": {decimal.Decimal(1)}})
    with pytest.raises(UnsupportedDataError, match=r"a key of data\['m'\]"):
        codec.encode({"m": {decimal.Decimal(1): 1}})


def test_encode_refuses_a_lone_surrogate_string() -> None:
    with pytest.raises(UnsupportedDataError, match=r"data\[0\] is a string that is not valid"):
        codec.encode(["\ud800"])


def test_encode_refuses_a_value_that_contains_itself() -> None:
    loop: list[Any] = []
    loop.append(loop)

    with pytest.raises(UnsupportedDataError, match="contains itself"):
        codec.encode(loop)


def test_encode_refuses_nesting_deeper_than_the_limit() -> None:
    deep: Any = 1
    for _ in range(codec.MAX_DEPTH + 10):
        deep = (deep,)

    with pytest.raises(UnsupportedDataError, match="nests deeper"):
        codec.encode(deep)


def test_large_strings_bytes_and_lists_round_trip() -> None:
    value = {"blob": b"x" * 30_000_000, "text": "y" * 10_000_000, "ids": list(range(1_000_000))}

    decoded = codec.decode(codec.encode(value))

    assert decoded == value


def test_decode_refuses_truncated_bytes() -> None:
    data = codec.encode({"a": [1, 2, 3]})

    with pytest.raises(CorruptDataError):
        codec.decode(data[:-1])


def test_decode_refuses_unknown_extension_type() -> None:
    data = msgpack.packb(msgpack.ExtType(99, b"x"))

    with pytest.raises(CorruptDataError, match="cannot be decoded"):
        codec.decode(data)


def test_decode_refuses_a_claimed_length_larger_than_the_input() -> None:
    data = b"\xdb\xff\xff\xff\xff" + b"a" * 10

    with pytest.raises(CorruptDataError):
        codec.decode(data)


def test_decode_refuses_nesting_beyond_the_unpack_stack() -> None:
    data = b"\x91" * 5000 + b"\xc0"

    with pytest.raises(CorruptDataError):
        codec.decode(data)


def test_decode_refuses_broken_extension_payloads() -> None:
    for code, payload in [(4, b"short"), (5, b"not a date"), (6, b"\xff\xfe")]:
        with pytest.raises(CorruptDataError):
            codec.decode(msgpack.packb(msgpack.ExtType(code, payload)))


def test_decode_refuses_a_set_of_unhashable_items() -> None:
    data = msgpack.packb([msgpack.ExtType(2, b""), [1]])

    with pytest.raises(CorruptDataError):
        codec.decode(data)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_decode_of_arbitrary_bytes_raises_only_corrupt_data_error(data: bytes) -> None:
    try:
        codec.decode(data)
    except CorruptDataError:
        pass


@given(values, st.data())
@settings(max_examples=50, deadline=None)
def test_decode_of_damaged_encodings_raises_only_corrupt_data_error(
    value: Any, draw: st.DataObject
) -> None:
    data = bytearray(codec.encode(value))
    index = draw.draw(st.integers(min_value=0, max_value=len(data) - 1))
    data[index] = draw.draw(st.integers(min_value=0, max_value=255))

    try:
        codec.decode(bytes(data))
    except CorruptDataError:
        pass


def test_date_is_not_confused_with_datetime() -> None:
    value = [date(2020, 1, 2), datetime(2020, 1, 2)]

    assert_same(codec.decode(codec.encode(value)), value)
