import random

import pytest

from iscore.retry import retries_left, retry_delay_s


def test_retry_max_counts_retries_after_the_first_attempt() -> None:
    entry = {"retry_max": 2}

    assert [retries_left(entry, attempt) for attempt in (1, 2, 3)] == [True, True, False]
    assert retries_left({}, 1) is False


def test_without_backoff_each_retry_waits_the_countdown() -> None:
    assert retry_delay_s({"retry_countdown": 7}, 1) == 7
    assert retry_delay_s({"retry_countdown": 7}, 5) == 7
    assert retry_delay_s({}, 1) == 180


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    entry = {"retry_backoff": True, "retry_backoff_max": 600}

    waits = [retry_delay_s(entry, n) for n in range(1, 16)]

    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600, 600, 600]


def test_backoff_cap_defaults_to_600_seconds() -> None:
    assert retry_delay_s({"retry_backoff": "True"}, 20) == 600


@pytest.mark.parametrize("retry_number", [1, 3, 6])
def test_jitter_draws_between_zero_and_the_wait(retry_number: int) -> None:
    entry = {"retry_backoff": True, "retry_jitter": True}
    rng = random.Random(4)

    waits = [retry_delay_s(entry, retry_number, rng=rng) for _ in range(200)]

    assert all(0 <= w <= 2 ** (retry_number - 1) for w in waits)
    assert len(set(waits)) > 150
