"""The `polyformer` command: one typer app that every verb module registers itself on.

Each verb lives in its own module exposing `register(app: typer.Typer) -> None`. Modules are
imported by name from `_COMMAND_MODULES`, so `polyformer --help` costs only those imports: verb
modules keep heavy imports (torch, transformers) inside their command functions.

`main()` is the console-script entry point. It turns user mistakes (any `PolyformerError`, or an
OS error about a path the user gave) into one `error: ...` line on stderr and exit code 2 instead
of a traceback; genuine bugs still show their traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

from polyformer.errors import PolyformerError

USER_ERROR_EXIT = 2

_COMMAND_MODULES: list[str] = [
    "polyformer.cli.data",
    "polyformer.cli.info",
    "polyformer.cli.convert",
    "polyformer.cli.pretrain",
    "polyformer.cli.plot",
    "polyformer.cli.tokenizer",
    "polyformer.cli.finetune",
    "polyformer.cli.evaluate",
    "polyformer.cli.predict",
    "polyformer.cli.embed",
    "polyformer.cli.embed_train",
    "polyformer.cli.embed_eval",
    "polyformer.cli.index",
    "polyformer.cli.search",
    "polyformer.cli.cluster",
    "polyformer.cli.generate",
    "polyformer.cli.chat",
    "polyformer.cli.bench",
    "polyformer.cli.serve",
    "polyformer.cli.compare",
    "polyformer.cli.attention",
]

app = typer.Typer(
    name="polyformer",
    help="One Transformer core, every form of it: BERT, GPT and encoder-decoder models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register_commands(target: typer.Typer, module_names: Sequence[str]) -> list[str]:
    """Import each verb module and call its `register`; return the modules that were found.

    Only a module that does not exist yet is skipped; an import error inside an existing
    module (a missing dependency, a syntax error) propagates.
    """
    registered: list[str] = []
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(target)
        registered.append(module_name)
    return registered


_register_commands(app, _COMMAND_MODULES)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _fail(message: str, code: int = USER_ERROR_EXIT) -> None:
    sys.stderr.write(f"error: {_one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def _describe_os_error(exc: OSError) -> str:
    reason = exc.strerror or exc.__class__.__name__
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return str(exc) or reason


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI on `argv` (default: sys.argv[1:]); always ends with SystemExit."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="polyformer")
    except PolyformerError as exc:
        _fail(str(exc) or exc.__class__.__name__)
    except OSError as exc:
        code = USER_ERROR_EXIT if exc.filename is not None else 1
        _fail(_describe_os_error(exc), code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


if __name__ == "__main__":
    main()
