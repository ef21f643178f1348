"""`polyformer tokenizer train`: learn a WordPiece, byte-level BPE or character vocabulary on a corpus.

The corpus is a catalog name or local files (`--data` repeated), read by
`polyformer.data.corpus.read_documents` from its training split, so the validation documents
never shape the vocabulary. The result is written with the tokenizer's own `save(out)` and loads
back with `polyformer.load_tokenizer` .
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

tokenizer_app = typer.Typer(help="Train tokenizers on a corpus.", no_args_is_help=True)


class Kind(str, Enum):
    wordpiece = "wordpiece"
    bpe = "bpe"
    char = "char"


@tokenizer_app.command("train")
def train(
    kind: Kind = typer.Option(..., "--kind", help="wordpiece (BERT), bpe (byte-level, GPT-2) or char (one token per character)."),
    data: list[str] = typer.Option(..., "--data", metavar="NAME|FILE",
                                   help="Catalog corpus (e.g. shakespeare) or .txt/.jsonl/.csv files; repeat for several."),
    out: Path = typer.Option(..., "--out", help="Folder to write the tokenizer to."),
    vocab_size: int | None = typer.Option(None, "--vocab-size", min=1, help="Vocabulary size (wordpiece and bpe)."),
    min_frequency: int = typer.Option(2, "--min-frequency", min=0, help="Drop pieces seen fewer times."),
    lowercase: bool = typer.Option(True, "--lowercase/--cased", help="Lower-case text first (wordpiece)."),
    text_column: str = typer.Option("text", "--text-column", help="jsonl field / csv column holding the text."),
) -> None:
    """Train a tokenizer on the training split of a corpus and save it to --out."""
    from polyformer.data.corpus import read_documents
    from polyformer.errors import DataError
    from polyformer.tokenizers import CharTokenizer

    spec: str | list[str] = data[0] if len(data) == 1 else list(data)
    documents = read_documents(spec, split="train", text_field=text_column)
    if kind is Kind.char:
        tokenizer = CharTokenizer.train(documents)
    elif vocab_size is None:
        raise DataError(f"--vocab-size is required for --kind {kind.value}")
    elif kind is Kind.wordpiece:
        from polyformer.tokenizers import train_wordpiece

        tokenizer = train_wordpiece(documents, vocab_size, lowercase=lowercase, min_frequency=min_frequency)
    else:
        from polyformer.tokenizers import train_bpe

        tokenizer = train_bpe(documents, vocab_size, min_frequency=min_frequency)
    tokenizer.save(out)
    typer.echo(f"{kind.value} tokenizer with {tokenizer.vocab_size} tokens written to {out}")


def register(app: typer.Typer) -> None:
    """Attach the `tokenizer` verb to the top-level app."""
    app.add_typer(tokenizer_app, name="tokenizer")
