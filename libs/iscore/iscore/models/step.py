"""What a step file declares about itself: names, version and parameters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StepParameter(BaseModel):
    """One parameter declared with ``new_step_parameter`` in a step's ``__init__``."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    sample_value: Any = None
    default_value: Any = None
    required: bool = False


class StepMetadata(BaseModel):
    """Metadata read by running a step class's ``__init__`` (in a sandbox)."""

    model_config = ConfigDict(frozen=True)

    file: str
    friendly_name: str = ""
    description: str = ""
    version: str = ""
    parameters: tuple[StepParameter, ...] = Field(default_factory=tuple)

    def parameter(self, name: str) -> StepParameter | None:
        return next((p for p in self.parameters if p.name == name), None)
