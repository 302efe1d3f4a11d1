"""Encrypted configuration values, the key ring file and key rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
from iscore.keyring import (
    KEY_FILE_ENV,
    KeyFileError,
    KeySource,
    RotationError,
    create_key_file,
    main,
    prepare_key_file,
    prune,
    read_key_ring,
    rotate,
    write_key_ring,
)
from iscore.messages import StepLogLine, StepResult, StepTask
from iscore.runtime.pool import ChildResult
from iscore.runtime.wire import outcome_header_and_data
from iscore.secrets import (
    MASK,
    SEALED,
    Key,
    KeyRing,
    KeyRingInvalidError,
    SecretUnreadableError,
    SecretUploadError,
    decrypt_value,
    encrypt_value,
    key_id_of,
    mask_document,
    refused_result,
    reveal_configuration,
    screen_child,
    scrub_result,
    seal_document,
    to_task_configuration,
)
from iscore.stores import SqliteStore

CANARY = "canary-Zq8v-secret-value"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.new()


def _flip_bit(token: str) -> str:
    head, _, body = token.rpartition(":")
    blob = bytearray(base64.urlsafe_b64decode(body))
    blob[-5] ^= 0x01
    return f"{head}:{base64.urlsafe_b64encode(bytes(blob)).decode()}"


def _document(name: str, *variables: tuple[str, Any, bool]) -> dict[str, Any]:
    return {
        "name": name,
        "configuration_data": [{"name": n, "value": v, "encrypted": e} for n, v, e in variables],
    }


# Tokens -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["p@ss", 42, {"user": "u", "ports": [1, 2]}, None])
def test_encrypted_value_decrypts_to_the_same_json_value(ring: KeyRing, value: Any) -> None:
    token = encrypt_value(ring, "prod", "password", value)

    assert decrypt_value(ring, "prod", "password", token) == value


def test_each_encryption_uses_a_fresh_nonce_and_names_the_key(ring: KeyRing) -> None:
    first = encrypt_value(ring, "prod", "password", CANARY)
    second = encrypt_value(ring, "prod", "password", CANARY)

    assert first != second
    assert CANARY not in first
    assert key_id_of(first) == ring.active_id


def test_flipped_bit_fails_closed_naming_configuration_and_variable(ring: KeyRing) -> None:
    token = _flip_bit(encrypt_value(ring, "prod", "password", CANARY))

    with pytest.raises(SecretUnreadableError) as caught:
        decrypt_value(ring, "prod", "password", token)

    assert "'password'" in str(caught.value)
    assert "'prod'" in str(caught.value)
    assert CANARY not in str(caught.value)
    assert (caught.value.configuration, caught.value.variable) == ("prod", "password")


def test_truncated_ciphertext_fails_closed(ring: KeyRing) -> None:
    token = encrypt_value(ring, "prod", "password", CANARY)

    for cut in (4, 20, len(token) // 2):
        with pytest.raises(SecretUnreadableError):
            decrypt_value(ring, "prod", "password", token[:-cut])


def test_ciphertext_moved_to_another_variable_fails_closed(ring: KeyRing) -> None:
    token = encrypt_value(ring, "prod", "password", CANARY)

    with pytest.raises(SecretUnreadableError, match="another variable"):
        decrypt_value(ring, "prod", "api_key", token)


def test_ciphertext_moved_to_another_configuration_fails_closed(ring: KeyRing) -> None:
    token = encrypt_value(ring, "prod", "password", CANARY)

    with pytest.raises(SecretUnreadableError, match="'staging'"):
        decrypt_value(ring, "staging", "password", token)


def test_ciphertext_of_another_system_fails_closed(ring: KeyRing) -> None:
    foreign = encrypt_value(KeyRing.new(), "prod", "password", CANARY)

    with pytest.raises(SecretUnreadableError, match="does not hold"):
        decrypt_value(ring, "prod", "password", foreign)


def test_ciphertext_under_a_same_named_foreign_key_fails_closed(ring: KeyRing) -> None:
    stranger = Key.generate()
    impostor = KeyRing(keys=(replace(stranger, key_id=ring.active_id),), active_id=ring.active_id)
    token = encrypt_value(impostor, "prod", "password", CANARY)

    with pytest.raises(SecretUnreadableError, match="altered"):
        decrypt_value(ring, "prod", "password", token)


# Documents --------------------------------------------------------------------


def test_sealing_encrypts_only_variables_marked_encrypted(ring: KeyRing) -> None:
    document = _document("prod", ("host", "10.0.0.1", False), ("password", CANARY, True))

    sealed = seal_document(ring, document)

    host, password = sealed["configuration_data"]
    assert host["value"] == "10.0.0.1"
    assert decrypt_value(ring, "prod", "password", password["value"]) == CANARY
    assert CANARY not in json.dumps(sealed)


def test_sealing_a_downloaded_document_again_changes_nothing(ring: KeyRing) -> None:
    sealed = seal_document(ring, _document("prod", ("password", CANARY, True)))

    assert seal_document(ring, sealed) == sealed


def test_sealing_refuses_ciphertext_under_an_unknown_key(ring: KeyRing) -> None:
    foreign = encrypt_value(KeyRing.new(), "prod", "password", CANARY)

    with pytest.raises(SecretUploadError, match="does not hold") as caught:
        seal_document(ring, _document("prod", ("password", foreign, True)))

    assert caught.value.field == "configuration_data[0].value"


def test_sealing_refuses_malformed_ciphertext(ring: KeyRing) -> None:
    with pytest.raises(SecretUploadError, match="malformed"):
        seal_document(ring, _document("prod", ("password", "isenc:v1:k1:%%%", True)))


def test_mask_keeps_the_stored_ciphertext(ring: KeyRing) -> None:
    stored = seal_document(ring, _document("prod", ("password", CANARY, True)))

    again = seal_document(ring, mask_document(stored), stored)

    assert again == stored


def test_mask_without_a_stored_value_is_refused(ring: KeyRing) -> None:
    with pytest.raises(SecretUploadError, match="mask"):
        seal_document(ring, _document("prod", ("password", MASK, True)))


def test_plain_value_shaped_like_a_sealed_one_is_refused(ring: KeyRing) -> None:
    with pytest.raises(SecretUploadError, match="reserved key"):
        seal_document(ring, _document("prod", ("trap", {SEALED: "x"}, False)))


def test_masked_document_shows_no_ciphertext(ring: KeyRing) -> None:
    sealed = seal_document(ring, _document("prod", ("u", "me", False), ("p", CANARY, True)))

    masked = mask_document(sealed)

    assert [item["value"] for item in masked["configuration_data"]] == ["me", MASK]


def test_task_configuration_carries_ciphertext_for_secrets(ring: KeyRing) -> None:
    sealed = seal_document(ring, _document("prod", ("u", "me", False), ("p", CANARY, True)))

    values = to_task_configuration("prod", sealed)

    assert values["u"] == "me"
    assert values["p"]["configuration"] == "prod"
    assert key_id_of(values["p"][SEALED]) == ring.active_id


def test_task_configuration_never_carries_a_stored_plaintext_secret() -> None:
    values = to_task_configuration("prod", _document("prod", ("p", CANARY, True)))

    assert CANARY not in json.dumps(values)
    assert values["p"][SEALED] is None


# Worker side ------------------------------------------------------------------


def _task(configuration: dict[str, Any]) -> StepTask:
    return StepTask(
        task_id="t1",
        run_id="isapp-" + "0" * 36,
        attempt=1,
        application="a",
        name="s",
        file="S",
        source="",
        step_version=1,
        entry={},
        configuration=configuration,
    )


def test_worker_reveals_plaintext_for_the_child(ring: KeyRing) -> None:
    sealed = seal_document(ring, _document("prod", ("u", "me", False), ("p", CANARY, True)))

    revealed = reveal_configuration(ring, to_task_configuration("prod", sealed))

    assert revealed.configuration == {"u": "me", "p": CANARY}
    assert CANARY not in repr(revealed)


def test_revealing_a_tampered_value_fails_closed(ring: KeyRing) -> None:
    sealed = seal_document(ring, _document("prod", ("p", CANARY, True)))
    values = to_task_configuration("prod", sealed)
    values["p"][SEALED] = _flip_bit(values["p"][SEALED])

    with pytest.raises(SecretUnreadableError, match="'p' of configuration 'prod'"):
        reveal_configuration(ring, values)


def test_refused_attempt_names_the_variable_not_the_value(ring: KeyRing) -> None:
    error = SecretUnreadableError("prod", "p", "the ciphertext was altered")

    result = refused_result(_task({}), error, worker="w", started_at=1.0)

    assert not result.succeeded
    assert result.error_type == "SecretUnreadableError"
    assert "'p'" in (result.error or "")


def test_result_text_is_masked_longest_secret_first(ring: KeyRing) -> None:
    sealed = seal_document(
        ring, _document("prod", ("short", "abc", True), ("long", "abc-def-ghi", True))
    )
    revealed = reveal_configuration(ring, to_task_configuration("prod", sealed))
    result = StepResult(
        task_id="t1",
        run_id="r",
        attempt=1,
        worker="w",
        succeeded=False,
        logs=[StepLogLine(level="info", message="token abc-def-ghi and abc", at=1.0)],
        error="failed with abc",
        traceback="line abc-def-ghi",
        started_at=1.0,
        finished_at=2.0,
    )

    scrubbed = scrub_result(revealed, result)

    assert scrubbed.logs[0].message == f"token {MASK} and {MASK}"
    assert scrubbed.error == f"failed with {MASK}"
    assert scrubbed.traceback == f"line {MASK}"


def _child_output(data: bytes | None) -> ChildResult:
    header = {
        "v": 1,
        "saved": data is not None,
        "data": data,
        "logs": [],
        "error_type": None,
        "error": None,
        "traceback": None,
    }
    return ChildResult(status="ok", output=msgpack.packb(header, use_bin_type=True))


def test_saved_data_holding_a_secret_fails_the_attempt(ring: KeyRing) -> None:
    sealed = seal_document(ring, _document("prod", ("p", CANARY, True)))
    revealed = reveal_configuration(ring, to_task_configuration("prod", sealed))

    screened = screen_child(revealed, _child_output(msgpack.packb({"x": f"<{CANARY}>"})))

    assert screened.output is not None
    header, data = outcome_header_and_data(screened.output)
    assert data is None
    assert header["error_type"] == "SecretInOutputError"
    assert CANARY not in screened.output.decode("latin-1")


def test_saved_data_without_secrets_passes_unchanged(ring: KeyRing) -> None:
    sealed = seal_document(ring, _document("prod", ("p", CANARY, True), ("s", "ab", True)))
    revealed = reveal_configuration(ring, to_task_configuration("prod", sealed))
    child = _child_output(msgpack.packb({"x": "ab ab"}))

    assert screen_child(revealed, child) is child


# Key ring file ----------------------------------------------------------------


def test_key_ring_survives_its_file_format(ring: KeyRing) -> None:
    again = KeyRing.from_json(ring.to_json())

    assert again == ring


def test_damaged_key_file_is_refused() -> None:
    with pytest.raises(KeyRingInvalidError, match="backup"):
        KeyRing.from_json('{"format": "is-keyring/1", "active": "k1", "keys": []}')


def test_default_key_file_is_created_private_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)

    path = prepare_key_file(tmp_path / "data")
    first = path.read_text()
    create_key_file(path)

    assert path == tmp_path / "data" / "encryption_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["encryption_key"]


def test_configured_key_file_that_is_missing_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "missing"))

    with pytest.raises(KeyFileError, match="backup"):
        prepare_key_file(tmp_path)

    assert not (tmp_path / "missing").exists()


def test_key_source_sees_a_rewritten_key_file(tmp_path: Path) -> None:
    path = tmp_path / "encryption_key"
    source = KeySource(path)
    before = source.ring()

    write_key_ring(path, before.with_new_active_key())

    assert source.ring().active_id != before.active_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_show_path_prints_the_configured_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "k"))

    code = main(["show-path"])

    assert code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "k")


# Rotation ---------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.db")
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "encryption_key"
    create_key_file(path)
    return path


async def _put(store: SqliteStore, ring: KeyRing, document: dict[str, Any]) -> None:
    await store.put_configuration(seal_document(ring, document))


async def test_rotation_moves_every_version_to_a_new_key(
    store: SqliteStore, key_file: Path
) -> None:
    old = read_key_ring(key_file)
    await _put(store, old, _document("prod", ("p", "one", True)))
    await _put(store, old, _document("prod", ("p", "two", True), ("q", 7, True)))
    await _put(store, old, _document("gone", ("p", "three", True)))
    await store.delete_configuration("gone")

    report = await rotate(store, key_file)

    ring = read_key_ring(key_file)
    assert report.new_key_id == ring.active_id != old.active_id
    assert report.retired_key_ids == (old.active_id,)
    assert report.reencrypted_count == 3
    plain = {}
    for record in await store.list_configuration_versions():
        for item in record.document["configuration_data"]:
            assert key_id_of(item["value"]) == ring.active_id
            plain[(record.name, record.version, item["name"])] = decrypt_value(
                ring, record.name, item["name"], item["value"]
            )
    assert plain == {
        ("prod", 1, "p"): "one",
        ("prod", 2, "p"): "two",
        ("prod", 2, "q"): 7,
        ("gone", 1, "p"): "three",
    }
    retired = ring.get(old.active_id)
    assert retired is not None
    assert retired.retired_at is not None


async def test_tokens_sent_before_rotation_still_decrypt(
    store: SqliteStore, key_file: Path
) -> None:
    old = read_key_ring(key_file)
    await _put(store, old, _document("prod", ("p", CANARY, True)))
    record = await store.get_configuration("prod")
    assert record is not None
    in_flight = to_task_configuration("prod", record.document)

    await rotate(store, key_file)

    assert reveal_configuration(read_key_ring(key_file), in_flight).configuration == {"p": CANARY}


async def test_rotation_refuses_before_changing_anything_when_a_value_is_tampered(
    store: SqliteStore, key_file: Path
) -> None:
    old = read_key_ring(key_file)
    document = seal_document(old, _document("prod", ("p", CANARY, True)))
    document["configuration_data"][0]["value"] = _flip_bit(
        document["configuration_data"][0]["value"]
    )
    await store.put_configuration(document)
    before = await asyncio.to_thread(key_file.read_text)

    with pytest.raises(RotationError, match="configuration 'prod' version 1 variable 'p'"):
        await rotate(store, key_file)

    assert await asyncio.to_thread(key_file.read_text) == before


async def test_prune_removes_retired_keys_once_nothing_uses_them(
    store: SqliteStore, key_file: Path
) -> None:
    old = read_key_ring(key_file)
    await _put(store, old, _document("prod", ("p", CANARY, True)))
    await rotate(store, key_file)

    pruned = await prune(store, key_file)

    ring = read_key_ring(key_file)
    assert pruned == (old.active_id,)
    assert [key.key_id for key in ring.keys] == [ring.active_id]
    record = await store.get_configuration("prod")
    assert record is not None
    assert reveal_configuration(ring, to_task_configuration("prod", record.document))


async def test_prune_refuses_while_a_stored_value_uses_a_retired_key(
    store: SqliteStore, key_file: Path
) -> None:
    old = read_key_ring(key_file)
    await rotate(store, key_file)
    await _put(store, old, _document("late", ("p", CANARY, True)))

    with pytest.raises(RotationError, match="still encrypts 1"):
        await prune(store, key_file)

    assert read_key_ring(key_file).get(old.active_id) is not None


async def test_rotation_can_leave_unreadable_values_as_they_are(
    store: SqliteStore, key_file: Path
) -> None:
    old = read_key_ring(key_file)
    document = seal_document(old, _document("prod", ("p", CANARY, True), ("q", "fine", True)))
    broken = _flip_bit(document["configuration_data"][0]["value"])
    document["configuration_data"][0]["value"] = broken
    await store.put_configuration(document)

    report = await rotate(store, key_file, skip_unreadable=True)
    pruned = await prune(store, key_file)

    record = await store.get_configuration("prod")
    assert record is not None
    p, q = record.document["configuration_data"]
    assert p["value"] == broken
    assert key_id_of(q["value"]) == report.new_key_id
    assert report.unreadable == ("configuration 'prod' version 1 variable 'p'",)
    assert pruned == (old.active_id,)
