"""Shell completion scripts, generated from the parser so they never drift.

``eval "$(iscli completion bash)"`` in ~/.bashrc (or ``zsh`` in ~/.zshrc)
completes subcommands, their options, kinds of definition and file paths.
"""

from __future__ import annotations

import argparse

from iscli.parser import KIND_CHOICES, build_parser

# Options whose value is a path: complete file names after them.
PATH_OPTIONS = ("-f", "--fileLocation")
# Subcommands whose first argument is a kind of definition.
KIND_COMMANDS = frozenset({"list", "get", "delete"})


def completion_script(shell: str) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    parser = build_parser()
    subcommands = _subcommands(parser)
    cases = []
    for name, sub in subcommands.items():
        words = _options(sub)
        if name in KIND_COMMANDS:
            words += KIND_CHOICES
        if name == "completion":
            words += ("bash", "zsh")
        cases.append(f'        {name}) opts="{" ".join(words)}" ;;')
    top = " ".join((*subcommands, *_options(parser)))
    body = _BASH_TEMPLATE.format(
        commands="|".join(subcommands),
        path_options="|".join(PATH_OPTIONS),
        top=top,
        cases="\n".join(cases),
    )
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subparsers.
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    return tuple(option for action in parser._actions for option in action.option_strings)


_BASH_TEMPLATE = """\
# iscli completion; load with: eval "$(iscli completion bash)"
_iscli() {{
    local cur prev cmd="" opts i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    case "$prev" in
        {path_options}) COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
    esac
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {commands}) cmd="${{COMP_WORDS[i]}}"; break ;;
        esac
    done
    case "$cmd" in
        "") opts="{top}" ;;
{cases}
    esac
    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )
}}
complete -o default -F _iscli iscli
"""
