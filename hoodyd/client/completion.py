"""Shell completion scripts, generated from the parser itself so they never fall behind it:
verbs, each verb's options, and program names (read from `hoodyd status --json`)."""

from __future__ import annotations

import argparse

# verbs whose positional argument is a program
PROGRAM_VERBS = ("status", "start", "stop", "restart", "logs", "edit", "rm", "enable", "disable")
# those of them that take several programs, and `all`
MANY_VERBS = ("status", "start", "stop", "restart", "rm", "enable", "disable")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    )


def verb_table(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each verb (`term ls` for nested ones) and its long options."""
    table: dict[str, list[str]] = {}
    for name, sub in _subparsers(parser).items():
        nested = _subparsers(sub)
        table[name] = sorted(nested) if nested else _options(sub)
        for inner, inner_parser in nested.items():
            table[f"{name} {inner}"] = _options(inner_parser)
    return table


_NAMES = "hoodyd status --json 2>/dev/null | sed -n 's/^ *\"name\": \"\\(.*\\)\",*$/\\1/p'"


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    table = verb_table(parser)
    verbs = " ".join(sorted(k for k in table if " " not in k))
    if shell == "fish":
        return _fish(table, verbs)
    cases = "\n".join(
        f'        "{verb}") opts="{" ".join(options)}" ;;' for verb, options in table.items()
    )
    body = f"""_hoodyd() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" verb="${{COMP_WORDS[1]}}" opts=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=( $(compgen -W "{verbs}" -- "$cur") ); return
    fi
    if [ "$verb" = term ] && [ "$COMP_CWORD" -ge 3 ]; then verb="term ${{COMP_WORDS[2]}}"; fi
    case "$verb" in
{cases}
    esac
    if [ "$verb" = term ] || [ "$verb" = completion ] && [ "$COMP_CWORD" -eq 2 ]; then
        COMPREPLY=( $(compgen -W "$opts bash zsh fish" -- "$cur") ); return
    fi
    case "$cur" in
        -*) COMPREPLY=( $(compgen -W "$opts" -- "$cur") ); return ;;
    esac
    case "$verb" in
        {"|".join(MANY_VERBS)})
            COMPREPLY=( $(compgen -W "$({_NAMES}) all" -- "$cur") ) ;;
        {"|".join(v for v in PROGRAM_VERBS if v not in MANY_VERBS)})
            COMPREPLY=( $(compgen -W "$({_NAMES})" -- "$cur") ) ;;
    esac
}}
complete -F _hoodyd hoodyd
"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def _fish(table: dict[str, list[str]], verbs: str) -> str:
    lines = [
        "complete -c hoodyd -f",
        f"complete -c hoodyd -n __fish_use_subcommand -a '{verbs}'",
    ]
    for verb, options in table.items():
        words = verb.split()
        if len(words) == 1 and options and not options[0].startswith("--"):
            choices = " ".join(options)
            lines.append(
                f"complete -c hoodyd -n '__fish_seen_subcommand_from {verb}' -a '{choices}'"
            )
            continue
        for option in options:
            lines.append(
                f"complete -c hoodyd -n '__fish_seen_subcommand_from {words[-1]}' "
                f"-l {option.removeprefix('--')}"
            )
    programs = " ".join(PROGRAM_VERBS)
    lines.append(
        f"complete -c hoodyd -n '__fish_seen_subcommand_from {programs}' "
        f"-a '({_NAMES})'"
    )
    many = " ".join(MANY_VERBS)
    lines.append(f"complete -c hoodyd -n '__fish_seen_subcommand_from {many}' -a all")
    return "\n".join(lines) + "\n"
