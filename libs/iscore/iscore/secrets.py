"""Encrypted configuration values: AES-256-GCM under a ring of named keys.

A value marked ``encrypted`` is stored, listed and sent to workers only as
a token ``isenc:v1:<key id>:<base64url(nonce | ciphertext | tag)>``. The
associated data binds the token to its configuration and variable, so a
token copied to another place fails closed (MANUAL-NOTES 16). Plaintext
exists in the worker just long enough to hand it to the step's child.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgpack  # type: ignore[import-untyped] # ships no type information
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from iscore.codec import CorruptDataError
from iscore.errors import IscoreError
from iscore.messages import StepResult, StepTask
from iscore.runtime.wire import outcome_header_and_data

# Every token starts with this; the version names the layout and AD scheme.
TOKEN_PREFIX = "isenc:v1:"
# AES-256: key length in bytes.
KEY_BYTES = 32
# GCM nonce length in bytes; random per value (2**-32 collision bound is
# far beyond the number of values one key ever encrypts here).
NONCE_BYTES = 12
# GCM tag length in bytes (appended to the ciphertext by AESGCM).
TAG_BYTES = 16
# What reads show instead of a value when a mask is asked for, and what an
# upload may send back to keep the stored value.
MASK = "********"
# Key in a task's configuration map that marks a sealed value (planner to
# worker). Uploads refuse plain values shaped like it (``seal_document``).
SEALED = "$encrypted"
# Domain separation for the associated data of configuration values.
_AD_LABEL = b"integration-service/configuration-value/v1\x00"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Shortest secret text searched for in saved data: shorter ones would
# match ordinary data by chance and fail unrelated steps.
MIN_SCREENED_CHARS = 6

C = TypeVar("C")


class SecretError(IscoreError):
    """Base of the errors about encrypted configuration values."""

    code = "secret_error"


class SecretUnreadableError(SecretError):
    """A stored or sent token cannot be decrypted: tampered, foreign or keyless.

    The message names the configuration and the variable, never the value.
    """

    code = "secret_unreadable"

    def __init__(self, configuration: str, variable: str, reason: str) -> None:
        super().__init__(
            f"Variable {variable!r} of configuration {configuration!r} cannot be "
            f"decrypted: {reason}; upload its plaintext value again with encrypted true.",
            field="configuration_data",
        )
        self.configuration = configuration
        self.variable = variable
        self.reason = reason


class SecretUploadError(SecretError):
    """An uploaded encrypted variable holds something we cannot accept."""

    code = "invalid_configuration"


class SecretInOutputError(SecretError):
    """A step tried to hand the plaintext of a secret out of its child process."""

    code = "secret_in_output"

    def __init__(self, configuration: str, variable: str) -> None:
        super().__init__(
            f"The step saved data containing the value of encrypted variable {variable!r} "
            f"of configuration {configuration!r}; secrets do not leave the step, so read "
            "it again with ${config." + variable + "} where it is needed.",
            field="data",
        )
        self.configuration = configuration
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Key:
    """One AES-256 key; ``retired_at`` is set once no stored value uses it."""

    key_id: str
    material: bytes = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None

    @classmethod
    def generate(cls) -> Key:
        """A fresh random key with a random id."""
        return cls(
            key_id=f"k{os.urandom(6).hex()}",
            material=AESGCM.generate_key(bit_length=KEY_BYTES * 8),
            created_at=datetime.now(UTC),
        )


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys a system holds; the active one encrypts, all of them decrypt."""

    keys: tuple[Key, ...]
    active_id: str

    @classmethod
    def new(cls) -> KeyRing:
        """A ring holding one fresh active key."""
        key = Key.generate()
        return cls(keys=(key,), active_id=key.key_id)

    @property
    def active(self) -> Key:
        key = self.get(self.active_id)
        if key is None:
            raise KeyRingInvalidError(
                f"The key ring names active key {self.active_id!r} but does not hold it; "
                "restore the key file from your backup."
            )
        return key

    def get(self, key_id: str) -> Key | None:
        """The key with ``key_id``, or None."""
        return next((key for key in self.keys if key.key_id == key_id), None)

    def with_new_active_key(self) -> KeyRing:
        """This ring plus a fresh key that becomes the active one."""
        key = Key.generate()
        return KeyRing(keys=(*self.keys, key), active_id=key.key_id)

    def with_retired(self, key_ids: Iterable[str]) -> KeyRing:
        """This ring with ``key_ids`` (never the active key) marked retired now."""
        names = set(key_ids) - {self.active_id}
        stamp = datetime.now(UTC)
        keys = tuple(
            replace(key, retired_at=stamp)
            if key.key_id in names and key.retired_at is None
            else key
            for key in self.keys
        )
        return KeyRing(keys=keys, active_id=self.active_id)

    def without(self, key_ids: Iterable[str]) -> KeyRing:
        """This ring with ``key_ids`` removed (the active key stays)."""
        names = set(key_ids) - {self.active_id}
        return KeyRing(
            keys=tuple(k for k in self.keys if k.key_id not in names), active_id=self.active_id
        )

    def to_json(self) -> str:
        """The key file text (contains key material: mode 0600 only)."""
        return json.dumps(
            {
                "format": "is-keyring/1",
                "active": self.active_id,
                "keys": [
                    {
                        "id": key.key_id,
                        "key": base64.b64encode(key.material).decode("ascii"),
                        "created_at": key.created_at.isoformat(),
                        "retired_at": key.retired_at.isoformat() if key.retired_at else None,
                    }
                    for key in self.keys
                ],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        """Parse key file text; raises ``KeyRingInvalidError`` naming the fault."""
        try:
            raw = json.loads(text)
            if raw.get("format") != "is-keyring/1":
                raise KeyRingInvalidError("expected format 'is-keyring/1'")
            ring = cls(keys=tuple(_key_from_json(k) for k in raw["keys"]), active_id=raw["active"])
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as err:
            raise KeyRingInvalidError(
                f"The key file is not a valid key ring ({type(err).__name__}); restore it "
                "from your backup."
            ) from err
        ring.active  # noqa: B018 - checks the active key is present
        return ring


class KeyRingInvalidError(SecretError):
    """The key file cannot be read as a key ring."""

    code = "invalid_key_file"


def _key_from_json(item: Mapping[str, Any]) -> Key:
    material = base64.b64decode(item["key"], validate=True)
    key_id = item["id"]
    if len(material) != KEY_BYTES or not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise ValueError("expected a 32-byte key with an id of letters, digits, '_' or '-'")
    retired = item.get("retired_at")
    return Key(
        key_id=key_id,
        material=material,
        created_at=datetime.fromisoformat(item["created_at"]),
        retired_at=datetime.fromisoformat(retired) if retired else None,
    )


# Tokens ---------------------------------------------------------------------


def is_ciphertext(value: Any) -> bool:
    """Whether ``value`` is shaped like one of our tokens (not whether it decrypts)."""
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def key_id_of(token: Any) -> str | None:
    """The key id a well-formed token names, else None."""
    parts = _token_parts(token)
    return parts[0] if parts is not None else None


def _token_parts(token: Any) -> tuple[str, bytes] | None:
    if not is_ciphertext(token):
        return None
    key_id, _, body = token[len(TOKEN_PREFIX) :].partition(":")
    if not _KEY_ID.fullmatch(key_id):
        return None
    try:
        blob = base64.urlsafe_b64decode(body.encode("ascii"))
    except (ValueError, binascii.Error):
        return None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        return None
    return key_id, blob


def _associated_data(configuration: str, variable: str, key_id: str) -> bytes:
    return _AD_LABEL + json.dumps([configuration, variable, key_id]).encode("utf-8")


def encrypt_value(ring: KeyRing, configuration: str, variable: str, value: Any) -> str:
    """Encrypt the JSON value ``value`` of ``variable`` under the active key."""
    key = ring.active
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(value).encode("utf-8")
    sealed = AESGCM(key.material).encrypt(
        nonce, plaintext, _associated_data(configuration, variable, key.key_id)
    )
    body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
    return f"{TOKEN_PREFIX}{key.key_id}:{body}"


def decrypt_value(ring: KeyRing, configuration: str, variable: str, token: Any) -> Any:
    """Decrypt a token of ``variable`` in ``configuration`` to its JSON value.

    Raises ``SecretUnreadableError`` (naming both, never the value) for a
    token that is malformed, names a key the ring lacks, or was altered or
    moved from another variable or configuration.
    """
    parts = _token_parts(token)
    if parts is None:
        raise SecretUnreadableError(configuration, variable, "it does not hold our ciphertext")
    key_id, blob = parts
    key = ring.get(key_id)
    if key is None:
        raise SecretUnreadableError(
            configuration,
            variable,
            f"it was encrypted with key {key_id!r}, which this system does not hold",
        )
    try:
        plaintext = AESGCM(key.material).decrypt(
            blob[:NONCE_BYTES],
            blob[NONCE_BYTES:],
            _associated_data(configuration, variable, key_id),
        )
    except InvalidTag as err:
        raise SecretUnreadableError(
            configuration, variable, "the ciphertext was altered or belongs to another variable"
        ) from err
    return json.loads(plaintext)


# Documents ------------------------------------------------------------------


def seal_document(
    ring: KeyRing, document: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The configuration ``document`` as it may be stored: no plaintext secrets.

    Encrypted variables holding plaintext are encrypted; our tokens are kept
    as they are, so a downloaded document uploads again unchanged. The mask
    keeps the variable's token from ``previous`` (the stored version).
    Raises ``SecretUploadError`` for a token under a key this system lacks,
    a malformed token, a mask with nothing to keep, or a plain value shaped
    like a sealed one.
    """
    name = str(document["name"])
    kept = _stored_tokens(previous)
    data = []
    for index, item in enumerate(document.get("configuration_data") or []):
        entry = dict(item)
        where = f"configuration_data[{index}].value"
        if entry.get("encrypted"):
            entry["value"] = _sealed_value(ring, name, entry, kept, where)
        elif isinstance(entry.get("value"), dict) and SEALED in entry["value"]:
            raise SecretUploadError(
                f"{where}: expected a value without the reserved key {SEALED!r}, found one "
                f"in variable {entry['name']!r}; rename that key.",
                field=where,
            )
        data.append(entry)
    return {**document, "configuration_data": data}


def _sealed_value(
    ring: KeyRing,
    configuration: str,
    entry: Mapping[str, Any],
    kept: Mapping[str, str],
    where: str,
) -> str:
    variable = str(entry["name"])
    value = entry.get("value")
    if value == MASK:
        if variable not in kept:
            raise SecretUploadError(
                f"{where}: variable {variable!r} holds the mask {MASK!r} but configuration "
                f"{configuration!r} has no stored value for it to keep; send the plaintext.",
                field=where,
            )
        return kept[variable]
    if not is_ciphertext(value):
        return encrypt_value(ring, configuration, variable, value)
    key_id = key_id_of(value)
    if key_id is None:
        raise SecretUploadError(
            f"{where}: variable {variable!r} of configuration {configuration!r} holds a "
            f"malformed {TOKEN_PREFIX!r} ciphertext; send the plaintext instead.",
            field=where,
        )
    if ring.get(key_id) is None:
        raise SecretUploadError(
            f"{where}: variable {variable!r} of configuration {configuration!r} was "
            f"encrypted with key {key_id!r}, which this system does not hold; send the "
            "plaintext instead.",
            field=where,
        )
    return str(value)


def _stored_tokens(document: Mapping[str, Any] | None) -> dict[str, str]:
    if not document:
        return {}
    return {
        str(item["name"]): item["value"]
        for item in document.get("configuration_data") or []
        if item.get("encrypted") and is_ciphertext(item.get("value"))
    }


def mask_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with every encrypted value replaced by ``MASK``."""
    data = [
        {**item, "value": MASK} if item.get("encrypted") else dict(item)
        for item in document.get("configuration_data") or []
    ]
    return {**document, "configuration_data": data}


def encrypted_tokens(document: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(variable, stored value)`` of each encrypted variable in ``document``."""
    for item in document.get("configuration_data") or []:
        if item.get("encrypted"):
            yield str(item.get("name")), item.get("value")


def reencrypt_document(
    ring: KeyRing, document: Mapping[str, Any], *, skip_unreadable: bool = False
) -> dict[str, Any] | None:
    """``document`` with every token moved to the active key; None if none moved.

    Raises ``SecretUnreadableError`` for a value that does not decrypt, or
    with ``skip_unreadable`` leaves such a value as it is (it fails closed
    wherever it is used, under any key).
    """
    name = str(document["name"])
    changed = False
    data = []
    for item in document.get("configuration_data") or []:
        entry = dict(item)
        if entry.get("encrypted") and key_id_of(entry.get("value")) != ring.active_id:
            try:
                value = decrypt_value(ring, name, str(entry["name"]), entry.get("value"))
            except SecretUnreadableError:
                if not skip_unreadable:
                    raise
            else:
                entry["value"] = encrypt_value(ring, name, str(entry["name"]), value)
                changed = True
        data.append(entry)
    return {**document, "configuration_data": data} if changed else None


# Planner to worker ----------------------------------------------------------


def to_task_configuration(name: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration values a step task carries: ciphertext for secrets.

    An encrypted variable travels as ``{SEALED: token, "configuration":
    name}``; one that holds no token (a store written around the gateway)
    travels without it, so the worker fails the step instead of the
    plaintext crossing NATS.
    """
    values: dict[str, Any] = {}
    for item in document.get("configuration_data") or []:
        value = item.get("value")
        if item.get("encrypted"):
            value = {SEALED: value if is_ciphertext(value) else None, "configuration": name}
        values[str(item["name"])] = value
    return values


@dataclass(frozen=True, slots=True)
class RevealedConfiguration:
    """The plaintext configuration of one step attempt, held by the worker.

    ``configuration`` goes to the step's child only; ``mask`` hides the
    secrets in text that leaves the worker.
    """

    configuration: dict[str, Any] = field(repr=False)
    secrets: tuple[tuple[str, str, bytes], ...] = field(default=(), repr=False)
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    @property
    def is_empty(self) -> bool:
        return self._pattern is None

    def mask(self, text: str | None) -> str | None:
        """``text`` with every secret value replaced by ``MASK``."""
        if text is None or self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def leaked_variable(self, data: bytes | None) -> tuple[str, str] | None:
        """``(configuration, variable)`` of a secret found in ``data``, if any."""
        if not data:
            return None
        for configuration, variable, needle in self.secrets:
            if len(needle) >= MIN_SCREENED_CHARS and needle in data:
                return configuration, variable
        return None


def reveal_configuration(ring: KeyRing, values: Mapping[str, Any]) -> RevealedConfiguration:
    """Decrypt the sealed values of a task's configuration (worker side).

    Raises ``SecretUnreadableError`` for the first value that does not decrypt.
    """
    plain: dict[str, Any] = {}
    found: list[tuple[str, str, bytes]] = []
    texts: list[str] = []
    for variable, value in values.items():
        if not (isinstance(value, dict) and SEALED in value):
            plain[variable] = value
            continue
        configuration = str(value.get("configuration"))
        secret = decrypt_value(ring, configuration, variable, value.get(SEALED))
        plain[variable] = secret
        text = secret if isinstance(secret, str) else json.dumps(secret)
        if text:
            texts.append(text)
            found.append((configuration, variable, text.encode("utf-8")))
    # Longest first, so a secret containing another is masked whole.
    ordered = sorted(set(texts), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(t) for t in ordered)) if ordered else None
    return RevealedConfiguration(configuration=plain, secrets=tuple(found), _pattern=pattern)


# Worker side ----------------------------------------------------------------


def screen_child(revealed: RevealedConfiguration, child: C) -> C:
    """``child`` (a ``ChildResult``) with a leak of a secret turned into a failure.

    Saved data holding the text of a secret of ``MIN_SCREENED_CHARS`` or
    more would cross NATS in plaintext, so the attempt fails instead with
    ``SecretInOutputError``; its logs stay and are masked later.
    """
    output = getattr(child, "output", None)
    if output is None or not revealed.secrets:
        return child
    try:
        header, data = outcome_header_and_data(output)
    except CorruptDataError:
        return child
    leaked = revealed.leaked_variable(data)
    if leaked is None:
        return child
    error = SecretInOutputError(*leaked)
    header.update(
        saved=False,
        data=None,
        error_type=type(error).__name__,
        error=str(error),
        traceback=str(error),
    )
    return replace(child, output=msgpack.packb(header, use_bin_type=True))  # type: ignore[type-var]


def scrub_result(revealed: RevealedConfiguration, result: StepResult) -> StepResult:
    """``result`` with secrets masked in its log lines, error and traceback."""
    if revealed.is_empty:
        return result
    logs = [
        line.model_copy(update={"message": revealed.mask(line.message)}) for line in result.logs
    ]
    return result.model_copy(
        update={
            "logs": logs,
            "error": revealed.mask(result.error),
            "traceback": revealed.mask(result.traceback),
        }
    )


def refused_result(
    task: StepTask, error: IscoreError, *, worker: str, started_at: float
) -> StepResult:
    """The failed result of an attempt whose configuration could not be revealed."""
    return StepResult(
        task_id=task.task_id,
        run_id=task.run_id,
        attempt=task.attempt,
        worker=worker,
        succeeded=False,
        error_type=type(error).__name__,
        error=str(error),
        traceback=str(error),
        started_at=started_at,
        finished_at=time.time(),
    )
