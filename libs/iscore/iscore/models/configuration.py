"""Configurations: named sets of variables shared by applications.

The document shape is the manual's "Defining a Configuration": ``name``,
``friendly_name``, ``author``, ``description`` and ``configuration_data``,
a list of ``{name, value, encrypted}``. Encryption happens elsewhere; here a
value is whatever the document holds (plaintext or our ciphertext).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from iscore.errors import IscoreError
from iscore.models._validation import (
    check_bool,
    check_name,
    check_text,
    describe_validation_error,
    expected,
)


class ConfigurationInvalidError(IscoreError):
    """A configuration document does not have the shape the manual describes."""

    code = "invalid_configuration"


class ConfigurationNotFoundError(IscoreError):
    """A configuration that was never uploaded, or was deleted, is asked for."""

    code = "configuration_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"Configuration {name!r} is not defined; upload it with POST "
            "/api/v1/configurations first.",
            field="name",
        )
        self.name = name


def _check_variable_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise expected("expected a non-empty string")
    return value


Text = Annotated[str, BeforeValidator(check_text)]


class ConfigurationVariable(BaseModel):
    """One entry of ``configuration_data``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, BeforeValidator(_check_variable_name)]
    value: Any = None
    encrypted: Annotated[bool, BeforeValidator(check_bool)] = False


class Configuration(BaseModel):
    """A configuration; build it from a document with ``from_document``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, BeforeValidator(check_name)]
    friendly_name: Text | None = None
    description: Text | None = None
    author: Text | None = None
    version: Text | None = None
    configuration_data: list[ConfigurationVariable] = Field(default_factory=list)

    @classmethod
    def from_document(cls, document: Any) -> Configuration:
        """Validate an uploaded document; raises ``ConfigurationInvalidError``."""
        if not isinstance(document, dict):
            raise ConfigurationInvalidError(
                f"A configuration must be a JSON object, found {type(document).__name__}.",
                field="document",
            )
        try:
            configuration = cls.model_validate(document)
        except ValidationError as err:
            message, field = describe_validation_error(err)
            raise ConfigurationInvalidError(message, field=field) from err

        seen: set[str] = set()
        for index, variable in enumerate(configuration.configuration_data):
            if variable.name in seen:
                field = f"configuration_data[{index}].name"
                raise ConfigurationInvalidError(
                    f"{field}: expected a name not used by another variable, found "
                    f"{variable.name!r}; rename or remove one of them.",
                    field=field,
                )
            seen.add(variable.name)
        return configuration

    def to_document(self) -> dict[str, Any]:
        """The document as uploaded: extra keys kept, unset defaults left out."""
        return self.model_dump(exclude_unset=True)

    def values(self) -> dict[str, Any]:
        """Variable names mapped to their stored values (ciphertext stays as is)."""
        return {variable.name: variable.value for variable in self.configuration_data}
