"""Configurations: named variable sets an application refers to."""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post
from litestar.exceptions import NotFoundException

from iscore.models.configuration import Configuration
from iscore.stores.base import ConfigurationRecord
from services.gateway.jsonbody import read_json


def configuration_document(record: ConfigurationRecord) -> dict[str, Any]:
    return {**record.document, "_version": record.version}


@post("/configurations", status_code=200)
async def upload_configuration(request: Request[Any, Any, Any],
                               expected_version: int | None = None) -> dict[str, Any]:
    body = await read_json(request)
    body.pop("_version", None)
    configuration = Configuration.from_document(body)
    record = await request.app.state.store.put_configuration(
        configuration.to_document(), expected_version=expected_version)
    return configuration_document(record)


@get("/configurations")
async def list_configurations(request: Request[Any, Any, Any], offset: int = 0,
                              limit: int = 100) -> list[dict[str, Any]]:
    records = await request.app.state.store.list_configurations(
        offset=offset, limit=min(limit, 1000))
    return [configuration_document(r) for r in records]


@get("/configurations/{config_name:str}")
async def get_configuration(request: Request[Any, Any, Any],
                            config_name: str) -> dict[str, Any]:
    record = await request.app.state.store.get_configuration(config_name)
    if record is None:
        raise NotFoundException(f"Configuration {config_name!r} is not defined.")
    return configuration_document(record)


@delete("/configurations/{config_name:str}", status_code=200)
async def delete_configuration(request: Request[Any, Any, Any],
                               config_name: str) -> dict[str, Any]:
    if not await request.app.state.store.delete_configuration(config_name):
        raise NotFoundException(f"Configuration {config_name!r} is not defined.")
    return {"name": config_name, "deleted": True}


ROUTES = [upload_configuration, list_configurations, get_configuration, delete_configuration]
