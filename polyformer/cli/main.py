"""The `polyformer` command: one typer app that every verb module registers itself on.

Each verb lives in its own module exposing `register(app: typer.Typer) -> None`; `VERBS` lists
them all. `polyformer --help` costs only those imports: verb modules keep heavy imports (torch,
transformers) inside their command functions.

`main()` is the console-script entry point. It turns user mistakes (any `PolyformerError`, or an
OS error about a path the user gave) into one `error: ...` line on stderr and exit code 2 instead
of a traceback; genuine bugs still show their traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from polyformer.cli import (
    attention,
    bench,
    chat,
    cluster,
    compare,
    convert,
    data,
    embed,
    embed_eval,
    embed_train,
    evaluate,
    finetune,
    generate,
    index,
    info,
    plot,
    predict,
    pretrain,
    search,
    serve,
    tokenizer,
)
from polyformer.errors import PolyformerError

USER_ERROR_EXIT = 2

# every verb, in the order `polyformer --help` lists them
VERBS = (data, info, convert, pretrain, plot, tokenizer, finetune, evaluate, predict, embed, embed_train, embed_eval,
         index, search, cluster, generate, chat, bench, serve, compare, attention)

app = typer.Typer(
    name="polyformer",
    help="One Transformer core, every form of it: BERT, GPT and encoder-decoder models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


for verb in VERBS:
    verb.register(app)


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
