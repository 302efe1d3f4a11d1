"""The graph of an application's steps, built from their ``output_to`` links.

A step runs once every step whose ``output_to`` names it has finished; steps
with no such link between them run together (manual, "Creating the List of
Steps and Step Parameters"). Inputs are listed in application order, which
is what ``get_data_from_step_by_order`` indexes (MANUAL-NOTES 12).
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iscore.errors import IscoreError

if TYPE_CHECKING:
    from iscore.models.application import StepEntry


class DagError(IscoreError):
    """The steps of an application do not form a valid graph.

    ``steps`` names the steps involved, in the order that explains the fault.
    """

    code = "invalid_dag"

    def __init__(self, message: str, *, steps: Sequence[str], field: str) -> None:
        super().__init__(message, field=field)
        self.steps = tuple(steps)


class DuplicateStepError(DagError):
    """Two steps share a name; names identify steps in ``output_to``."""

    code = "duplicate_step"


class UnknownStepLinkError(DagError):
    """An ``output_to`` entry names a step the application does not have."""

    code = "unknown_step_link"


class SelfLinkError(DagError):
    """A step names itself in its own ``output_to``."""

    code = "self_link"


class CycleError(DagError):
    """``output_to`` links lead from a step back to itself through others."""

    code = "cycle"


@dataclass(frozen=True, slots=True)
class Dag:
    """Steps and their links; build it with ``build_dag``.

    Every query answers in application order. Lookups are by step name.
    """

    names: tuple[str, ...]
    inputs: Mapping[str, tuple[str, ...]]
    outputs: Mapping[str, tuple[str, ...]]
    positions: Mapping[str, int]
    order: tuple[str, ...]

    def inputs_of(self, name: str) -> tuple[str, ...]:
        """Steps whose ``output_to`` names ``name``, in application order."""
        return self.inputs[name]

    def outputs_of(self, name: str) -> tuple[str, ...]:
        """Steps named in the ``output_to`` of ``name``, in application order."""
        return self.outputs[name]

    def roots(self) -> list[str]:
        """Steps with no inputs: they can start as soon as the run starts."""
        return [name for name in self.names if not self.inputs[name]]

    def is_ready(self, name: str, finished: Collection[str]) -> bool:
        """True when every input of ``name`` is in ``finished``."""
        sources = self.inputs[name]
        # Steps tend to finish in the order they were dispatched, which is
        # application order; checking the last inputs first finds one still
        # running at once and keeps a wide fan-in from costing O(n^2).
        return len(sources) <= len(finished) and all(
            source in finished for source in reversed(sources)
        )

    def ready(self, finished: Collection[str], started: Collection[str]) -> list[str]:
        """Steps not yet started or finished whose inputs have all finished.

        Linear in the size of the graph; on each finished step prefer
        ``newly_ready``, which only looks at that step's outputs.
        """
        return [
            name
            for name in self.names
            if name not in started and name not in finished and self.is_ready(name, finished)
        ]

    def newly_ready(
        self,
        finished_step: str,
        finished: Collection[str],
        *,
        started: Collection[str] = frozenset(),
    ) -> list[str]:
        """Outputs of ``finished_step`` that became ready when it finished.

        ``finished`` must already include ``finished_step``.
        """
        return [
            name
            for name in self.outputs[finished_step]
            if name not in started and name not in finished and self.is_ready(name, finished)
        ]

    def descendants(self, name: str) -> set[str]:
        """Every step reachable from ``name`` through ``output_to`` links."""
        found: set[str] = set()
        pending = list(self.outputs[name])
        while pending:
            step = pending.pop()
            if step in found:
                continue
            found.add(step)
            pending.extend(self.outputs[step])
        return found

    def topological_order(self) -> tuple[str, ...]:
        """All steps, each after its inputs; ties keep application order."""
        return self.order


def build_dag(steps: Sequence[StepEntry]) -> Dag:
    """Check the links between ``steps`` and return their graph.

    Raises ``DuplicateStepError``, ``SelfLinkError``, ``UnknownStepLinkError``
    or ``CycleError``; each names the steps and the offending field.
    """
    positions: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.name in positions:
            raise DuplicateStepError(
                f"Step name {step.name!r} is used by steps[{positions[step.name]}] and "
                f"steps[{index}]; step names must be unique within an application.",
                steps=(step.name,),
                field=f"steps[{index}].name",
            )
        positions[step.name] = index

    names = tuple(positions)
    outputs = {
        step.name: _checked_outputs(index, step, positions) for index, step in enumerate(steps)
    }
    inputs: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for target in outputs[name]:
            inputs[target].append(name)

    frozen_inputs = {name: tuple(sources) for name, sources in inputs.items()}
    order = _topological_order(names, frozen_inputs, outputs, positions)
    return Dag(names, frozen_inputs, outputs, positions, order)


def _checked_outputs(index: int, step: StepEntry, positions: Mapping[str, int]) -> tuple[str, ...]:
    field = f"steps[{index}].output_to"
    targets: dict[str, None] = {}
    for target in step.output_to:
        if target == step.name:
            raise SelfLinkError(
                f"Step {step.name!r} names itself in output_to; a step cannot feed its "
                "own input, remove it from the list.",
                steps=(step.name,),
                field=field,
            )
        if target not in positions:
            raise UnknownStepLinkError(
                f"Step {step.name!r} outputs to {target!r}, which is not a step of this "
                "application; fix the name or add the step.",
                steps=(step.name, target),
                field=field,
            )
        targets[target] = None
    return tuple(sorted(targets, key=positions.__getitem__))


def _topological_order(
    names: tuple[str, ...],
    inputs: Mapping[str, tuple[str, ...]],
    outputs: Mapping[str, tuple[str, ...]],
    positions: Mapping[str, int],
) -> tuple[str, ...]:
    waiting = {name: len(inputs[name]) for name in names}
    heap = [positions[name] for name in names if not waiting[name]]
    order: list[str] = []
    while heap:
        name = names[heapq.heappop(heap)]
        order.append(name)
        for target in outputs[name]:
            waiting[target] -= 1
            if not waiting[target]:
                heapq.heappush(heap, positions[target])

    if len(order) < len(names):
        _raise_cycle(names, inputs, positions, done=set(order))
    return tuple(order)


def _raise_cycle(
    names: tuple[str, ...],
    inputs: Mapping[str, tuple[str, ...]],
    positions: Mapping[str, int],
    *,
    done: set[str],
) -> None:
    # Every step left over has an input that is also left over, so walking
    # backwards along such inputs must revisit a step: that loop is a cycle.
    step = next(name for name in names if name not in done)
    walked: dict[str, int] = {}
    while step not in walked:
        walked[step] = len(walked)
        step = next(source for source in inputs[step] if source not in done)

    backwards = list(walked)[walked[step] :]
    cycle = backwards[::-1]
    first = min(range(len(cycle)), key=lambda i: positions[cycle[i]])
    cycle = cycle[first:] + cycle[:first]
    closing = cycle[-1]
    shown = " -> ".join(repr(name) for name in [*cycle, cycle[0]])
    raise CycleError(
        f"Steps {shown} form a cycle through output_to; remove one of these links.",
        steps=cycle,
        field=f"steps[{positions[closing]}].output_to",
    )
