"""Option groups: a dataclass of command-line options that commands take as one parameter.

Typer reads a command's options from its signature, so options shared by several verbs would be
written out in each of them. Instead a group is a dataclass whose fields are declared with
`option(...)`; a command annotated `sampling: Sampling` and decorated with `@grouped` shows
typer each field as an option of its own (names, defaults and help defined once) and is called
with the dataclass built from what was given:

    @dataclass
    class Sampling:
        temperature: float = option(0.0, "--temperature", help="0 = greedy.")

    @grouped
    def generate(model: str = MODEL, sampling: Sampling = Sampling()) -> None: ...
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

import typer

_OPTION = "typer_option"


def option(default: Any, *names: str, help: str, **checks: Any) -> Any:
    """A dataclass field that is also a command-line option (`typer.Option(default, *names, help=help, **checks)`;
    `checks` are typer's own, such as `min=1`)."""
    return dataclasses.field(default=default, metadata={_OPTION: typer.Option(default, *names, help=help, **checks)})


def given(group: Any) -> dict[str, Any]:
    """The fields of an option group that were set (not None): what a command passes on over other defaults."""
    return {f.name: getattr(group, f.name) for f in dataclasses.fields(group) if getattr(group, f.name) is not None}


def grouped(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with each option-group parameter spread into the group's options (see the module docstring)."""
    hints = typing.get_type_hints(command)
    parameters: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for name, parameter in inspect.signature(command).parameters.items():
        kind = hints.get(name)
        if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=kind))
            continue
        fields = dataclasses.fields(kind)
        field_types = typing.get_type_hints(kind)
        groups[name] = (kind, [f.name for f in fields])
        parameters += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.metadata[_OPTION],
                                         annotation=field_types[f.name]) for f in fields]
    names = [parameter.name for parameter in parameters]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise TypeError(f"{command.__name__}: option names {clashes} appear twice (a group and the command, or two groups)")

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        for name, (kind, members) in groups.items():
            values[name] = kind(**{member: values.pop(member) for member in members})
        return command(**values)

    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return run
