"""GraphQL over HTTP for the ``QueryGQL`` built-in step.

A GraphQL server answers with ``data`` and, when something went wrong,
``errors``; errors fail the step with the server's own messages.
"""

from __future__ import annotations

from typing import Any

import httpx

from iscore.builtins.outbound import OutboundRequestError, check_status
from iscore.errors import IscoreError

__all__ = ["GraphQLError", "graphql_body", "graphql_data"]


class GraphQLError(IscoreError):
    """A GraphQL server reported errors; ``messages`` are its error messages."""

    code = "graphql_error"

    def __init__(self, url: str, messages: list[str]) -> None:
        listed = "; ".join(messages)
        super().__init__(
            f"GraphQL server {url!r} reported {len(messages)} error(s): {listed}.",
            field="query",
        )
        self.url = url
        self.messages = messages


def graphql_body(
    query: str, variables: dict[str, Any] | None, operation_name: str | None
) -> dict[str, Any]:
    """Return the JSON body of a GraphQL request."""
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation_name:
        body["operationName"] = operation_name
    return body


def graphql_data(response: httpx.Response, url: str) -> Any:
    """Return the ``data`` member of a GraphQL response.

    Raises ``GraphQLError`` with the server's messages when the response
    lists errors (whatever its HTTP status), ``OutboundRequestError`` for an
    HTTP error without a GraphQL body or a body that is not GraphQL JSON.
    """
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("errors"):
        raise GraphQLError(url, [_message(error) for error in document["errors"]])

    check_status(response, url)
    if not isinstance(document, dict) or "data" not in document:
        raise OutboundRequestError(
            f"Response of {url} is not a GraphQL response (a JSON object with 'data'); "
            "check that the URL is the GraphQL endpoint.",
            url=url,
            status_code=response.status_code,
        )
    return document["data"]


def _message(error: Any) -> str:
    if isinstance(error, dict) and "message" in error:
        return str(error["message"])
    return str(error)
