import time

import pytest
from iscore.dag import (
    CycleError,
    DuplicateStepError,
    SelfLinkError,
    UnknownStepLinkError,
    build_dag,
)
from iscore.models.application import StepEntry


def steps(*links: tuple[str, list[str]]) -> list[StepEntry]:
    return [StepEntry(name=name, file="Step", output_to=outputs) for name, outputs in links]


def test_inputs_are_listed_in_application_order_not_link_order() -> None:
    dag = build_dag(steps(("late", []), ("b", ["late"]), ("a", ["late"])))

    assert dag.inputs_of("late") == ("b", "a")


def test_outputs_are_listed_in_application_order() -> None:
    dag = build_dag(steps(("src", ["z", "y"]), ("y", []), ("z", [])))

    assert dag.outputs_of("src") == ("y", "z")


def test_steps_without_links_are_all_roots_and_ready_together() -> None:
    dag = build_dag(steps(("a", []), ("b", []), ("c", [])))

    assert dag.roots() == ["a", "b", "c"]
    assert dag.ready(finished=set(), started=set()) == ["a", "b", "c"]


def test_step_is_ready_only_when_every_input_finished() -> None:
    dag = build_dag(steps(("a", ["join"]), ("b", ["join"]), ("join", [])))

    assert dag.ready(finished={"a"}, started={"a", "b"}) == []
    assert dag.ready(finished={"a", "b"}, started={"a", "b"}) == ["join"]


def test_ready_leaves_out_started_steps() -> None:
    dag = build_dag(steps(("a", ["b"]), ("b", [])))

    assert dag.ready(finished={"a"}, started={"a", "b"}) == []


def test_newly_ready_only_reports_outputs_of_the_finished_step() -> None:
    dag = build_dag(steps(("a", ["join", "solo"]), ("b", ["join"]), ("join", []), ("solo", [])))

    assert dag.newly_ready("a", {"a"}) == ["solo"]
    assert dag.newly_ready("b", {"a", "b"}) == ["join"]
    assert dag.newly_ready("b", {"a", "b"}, started={"join"}) == []


def test_descendants_include_every_step_reachable_through_links() -> None:
    dag = build_dag(steps(("a", ["b"]), ("b", ["c", "d"]), ("c", []), ("d", []), ("e", [])))

    assert dag.descendants("a") == {"b", "c", "d"}
    assert dag.descendants("e") == set()


def test_topological_order_puts_inputs_first_then_the_earliest_ready_step() -> None:
    dag = build_dag(steps(("last", []), ("first", ["last"]), ("free", [])))

    assert dag.topological_order() == ("first", "last", "free")


def test_duplicate_step_name_is_refused_naming_both_positions() -> None:
    with pytest.raises(DuplicateStepError) as caught:
        build_dag(steps(("a", []), ("a", [])))

    assert caught.value.code == "duplicate_step"
    assert caught.value.steps == ("a",)
    assert caught.value.field == "steps[1].name"
    assert "steps[0]" in str(caught.value)


def test_output_to_naming_a_missing_step_is_refused() -> None:
    with pytest.raises(UnknownStepLinkError) as caught:
        build_dag(steps(("a", []), ("b", ["ghost"])))

    assert caught.value.steps == ("b", "ghost")
    assert caught.value.field == "steps[1].output_to"
    assert "'ghost'" in str(caught.value)


def test_step_naming_itself_in_output_to_is_refused() -> None:
    with pytest.raises(SelfLinkError) as caught:
        build_dag(steps(("a", ["a"])))

    assert caught.value.code == "self_link"
    assert caught.value.field == "steps[0].output_to"


def test_cycle_is_refused_naming_its_steps_in_link_order() -> None:
    with pytest.raises(CycleError) as caught:
        build_dag(steps(("entry", ["b"]), ("c", ["a"]), ("a", ["b"]), ("b", ["c"])))

    assert caught.value.code == "cycle"
    assert caught.value.steps == ("c", "a", "b")
    assert "'c' -> 'a' -> 'b' -> 'c'" in str(caught.value)
    assert caught.value.field == "steps[3].output_to"


def test_repeated_output_to_entry_links_once() -> None:
    dag = build_dag(steps(("a", ["b", "b"]), ("b", [])))

    assert dag.inputs_of("b") == ("a",)


def test_five_thousand_step_fan_out_and_fan_in_builds_and_plans_fast() -> None:
    width = 5000
    leaves = [f"leaf {i}" for i in range(width)]
    entries = steps(("root", leaves), *((leaf, ["join"]) for leaf in leaves), ("join", []))
    started = time.perf_counter()

    dag = build_dag(entries)
    first_wave = dag.newly_ready("root", {"root"})
    finished = {"root"}
    last_wave: list[str] = []
    for leaf in leaves:
        finished.add(leaf)
        last_wave = dag.newly_ready(leaf, finished)

    assert len(first_wave) == width
    assert last_wave == ["join"]
    assert time.perf_counter() - started < 2.0
