"""Checking, loading and inspecting step source files (MANUAL-NOTES 10).

``check_step_source`` only parses, so the gateway may call it on uploads.
``load_step_class`` and ``inspect_step`` run step code and belong in the
sandboxed child process.
"""

from __future__ import annotations

import ast
import linecache
import sys
import types
from typing import Any

from iscore.errors import IscoreError
from iscore.models.step import StepMetadata
from iscore.runtime.basestep import (
    BaseStep,
    StepContext,
    current_context,
    install_context,
    uninstall_context,
)
from iscore.runtime.invocation import StepInvocation

__all__ = [
    "StepSourceError",
    "check_step_source",
    "inspect_step",
    "load_step_class",
    "step_filename",
]

# Dotted spellings of the base class that make a class a step for certain.
_BASESTEP_NAMES = frozenset({"BaseStep", "BaseStep.BaseStep", "ipaascore.BaseStep.BaseStep"})


class StepSourceError(IscoreError):
    """A step file is not a valid step.

    ``line`` is the 1-based line at fault, or None when no single line is
    (for example when the expected class is missing altogether). ``file``
    is the step file name without ``.py``.
    """

    code = "invalid_step"

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        super().__init__(message, field="source")
        self.file = file
        self.line = line


def step_filename(file: str) -> str:
    """Return the file name tracebacks show for step ``file``."""
    return f"{file}.py"


def check_step_source(source: str, file: str) -> None:
    """Check ``source`` is a step file named ``file`` without running it.

    Raises ``StepSourceError`` (with ``line``) when the source does not
    compile, defines no top-level class named ``file``, the class does not
    subclass ``BaseStep``, or it has no ``execute`` method.
    """
    _parse_step(source, file)


def _parse_step(source: str, file: str) -> ast.Module:
    if not file.isidentifier():
        raise StepSourceError(
            f"Step file name {file!r} is not a Python identifier; name the file like its "
            "class, with letters, digits and underscores.",
            file=file,
        )
    try:
        tree = ast.parse(source, filename=step_filename(file))
    except SyntaxError as err:
        raise StepSourceError(
            f"Step file {file!r} does not compile: {err.msg} at line {err.lineno}; fix the syntax.",
            file=file,
            line=err.lineno,
        ) from err
    except ValueError as err:
        raise StepSourceError(
            f"Step file {file!r} does not compile: {err}; remove the offending bytes.",
            file=file,
        ) from err
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    step_class = classes.get(file)
    if step_class is None:
        raise _missing_class(file, classes)
    _check_class(step_class, classes, file)
    return tree


def _missing_class(file: str, classes: dict[str, ast.ClassDef]) -> StepSourceError:
    if not classes:
        return StepSourceError(
            f"Step file {file!r} defines no class; define class {file!r} subclassing BaseStep.",
            file=file,
        )
    first = next(iter(classes.values()))
    defined = ", ".join(repr(name) for name in classes)
    return StepSourceError(
        f"Step file {file!r} defines classes {defined} but none named {file!r}; name the "
        "step class like the file.",
        file=file,
        line=first.lineno,
    )


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_base_name(node.value)}.{node.attr}"
    return ""


def _check_class(step_class: ast.ClassDef, classes: dict[str, ast.ClassDef], file: str) -> None:
    is_step, has_execute = _step_ancestry(step_class, classes, set())
    if not is_step:
        raise StepSourceError(
            f"Class {file!r} at line {step_class.lineno} does not subclass BaseStep; write "
            f"'class {file}(BaseStep):' after 'from ipaascore.BaseStep import BaseStep'.",
            file=file,
            line=step_class.lineno,
        )
    if not has_execute:
        raise StepSourceError(
            f"Class {file!r} at line {step_class.lineno} has no execute method; define "
            "'def execute(self):' with the step's logic.",
            file=file,
            line=step_class.lineno,
        )


def _step_ancestry(
    node: ast.ClassDef, classes: dict[str, ast.ClassDef], seen: set[str]
) -> tuple[bool, bool]:
    """Tell from source alone whether a class is a step and has ``execute``.

    Bases defined in the same file are followed. A base imported from
    elsewhere whose name ends in ``BaseStep`` (a SyncPack's own base class)
    may define ``execute`` itself, so it counts as providing one.
    """
    seen.add(node.name)
    is_step = False
    has_execute = any(
        isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == "execute"
        for item in node.body
    )
    for base in node.bases:
        name = _base_name(base)
        local = classes.get(name)
        if local is not None and name not in seen:
            base_is_step, base_has_execute = _step_ancestry(local, classes, seen)
        elif name in _BASESTEP_NAMES:
            base_is_step, base_has_execute = True, False
        else:
            base_is_step = base_has_execute = name.endswith("BaseStep")
        is_step = is_step or base_is_step
        has_execute = has_execute or base_has_execute
    return is_step, has_execute


def load_step_class(source: str, file: str) -> type[BaseStep]:
    """Run ``source`` in a fresh module and return its step class ``file``.

    The module is named ``isstep_<file>`` and sits in ``sys.modules`` only
    while its body runs (dataclasses and similar need it there). Frames of
    step code show ``<file>.py`` with correct line numbers. Raises
    ``StepSourceError`` for an invalid step file; exceptions raised by the
    module body itself propagate unchanged.
    """
    tree = _parse_step(source, file)
    filename = step_filename(file)
    code = compile(tree, filename, "exec")
    _remember_source(filename, source)
    module = types.ModuleType(f"isstep_{file}")
    module.__file__ = filename
    previous = sys.modules.get(module.__name__)
    sys.modules[module.__name__] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - running step code is this function's job
    finally:
        if previous is None:
            sys.modules.pop(module.__name__, None)
        else:
            sys.modules[module.__name__] = previous
    step_class = getattr(module, file, None)
    if not (isinstance(step_class, type) and issubclass(step_class, BaseStep)):
        raise StepSourceError(
            f"Step file {file!r} binds {file!r} to {type(step_class).__name__!r} after it runs, "
            "not to a BaseStep subclass; do not rebind the step class name.",
            file=file,
        )
    return step_class


def _remember_source(filename: str, source: str) -> None:
    """Let tracebacks quote step lines; ``None`` mtime keeps checkcache away."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)


def inspect_step(source: str, file: str) -> StepMetadata:
    """Load step ``file``, run its ``__init__`` and return what it declares.

    Runs step code: call it only inside a sandboxed child process. Raises
    ``StepSourceError`` for an invalid step file; exceptions from the step's
    own code propagate.
    """
    step_class = load_step_class(source, file)
    invocation = StepInvocation(source=source, file=file, entry={"name": file, "file": file})
    token = install_context(StepContext(invocation=invocation))
    try:
        step = step_class()
    finally:
        uninstall_context(token)
    parameters = tuple(current_context(step).parameters.values())
    return StepMetadata(
        file=file,
        friendly_name=_text(step.friendly_name),
        description=_text(step.description),
        version=_text(step.version),
        parameters=parameters,
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)
