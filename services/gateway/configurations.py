"""Configurations: named variable sets an application refers to.

Encrypted values are sealed here before they are stored (MANUAL-NOTES 16);
reads return our ciphertext, or ``********`` with ``?mask=true``, and never
plaintext: the gateway cannot decrypt.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, delete, get, post

from iscore.keyring import default_key_source
from iscore.models.configuration import Configuration, ConfigurationNotFoundError
from iscore.secrets import encrypted_tokens, mask_document, seal_document
from iscore.stores.base import ConfigurationRecord
from services.gateway.jsonbody import read_json

log = structlog.get_logger(__name__)

# Most configurations one list request returns.
MAX_LIST_LIMIT = 1000


def configuration_document(record: ConfigurationRecord, *, mask: bool = False) -> dict[str, Any]:
    """The stored document as the API shows it, with its ``_version``."""
    document = mask_document(record.document) if mask else record.document
    return {**document, "_version": record.version}


@post("/configurations", status_code=200)
async def upload_configuration(
    request: Request[Any, Any, Any], expected_version: int | None = None
) -> dict[str, Any]:
    """Add or replace a configuration; encrypted plaintext values are sealed."""
    body = await read_json(request)
    body.pop("_version", None)
    configuration = Configuration.from_document(body)
    store = request.app.state.store
    previous = await store.get_configuration(configuration.name)
    document = seal_document(
        default_key_source().ring(),
        configuration.to_document(),
        previous.document if previous is not None else None,
    )
    record = await store.put_configuration(document, expected_version=expected_version)
    log.info(
        "configuration_uploaded",
        configuration=record.name,
        version=record.version,
        variable_count=len(configuration.configuration_data),
        encrypted_count=sum(1 for _ in encrypted_tokens(document)),
    )
    return configuration_document(record)


@get("/configurations")
async def list_configurations(
    request: Request[Any, Any, Any], offset: int = 0, limit: int = 100, mask: bool = False
) -> list[dict[str, Any]]:
    """Every configuration's latest version, by name."""
    records = await request.app.state.store.list_configurations(
        offset=offset, limit=min(limit, MAX_LIST_LIMIT)
    )
    return [configuration_document(r, mask=mask) for r in records]


@get("/configurations/{config_name:str}")
async def get_configuration(
    request: Request[Any, Any, Any], config_name: str, mask: bool = False
) -> dict[str, Any]:
    """One configuration; encrypted values as ciphertext, or masked."""
    record = await request.app.state.store.get_configuration(config_name)
    if record is None:
        raise ConfigurationNotFoundError(config_name)
    return configuration_document(record, mask=mask)


@delete("/configurations/{config_name:str}", status_code=200)
async def delete_configuration(request: Request[Any, Any, Any], config_name: str) -> dict[str, Any]:
    """Delete a configuration; later runs that name it are refused."""
    if not await request.app.state.store.delete_configuration(config_name):
        raise ConfigurationNotFoundError(config_name)
    log.info("configuration_deleted", configuration=config_name)
    return {"name": config_name, "deleted": True}


ROUTES = [upload_configuration, list_configurations, get_configuration, delete_configuration]
