"""`load_tokenizer(path)`: one entry point for every tokenizer layout polyformer reads.

It looks at what is there and dispatches:

| given                                   | read as                                        |
|-----------------------------------------|------------------------------------------------|
| path, run directory, catalog name or hub id | located by `polyformer.locations.resolve`, then below |
| `tokenizer.json` (file or in a dir)     | serialised `tokenizers` + HF configs beside it |
| `vocab.json`/`encoder.json` + `merges.txt`/`vocab.bpe` | GPT-2 byte-level BPE            |
| `vocab.txt`                             | BERT WordPiece                                 |
| `*.gguf` (file, or the only one in a dir) | the vocabulary inside the GGUF               |
| sentence-transformers dir without files at the top | its `0_Transformer/` module        |
| `char_tokenizer.json` (file or in a dir) | a character-level `CharTokenizer`             |

Anything else is a TokenizerError that names the path and lists what was looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from polyformer.errors import TokenizerError
from polyformer.locations import resolve
from polyformer.tokenizers.char import CHAR_TOKENIZER_FILE, CharTokenizer
from polyformer.tokenizers.gguf_vocab import load_gguf_tokenizer
from polyformer.tokenizers.hf_files import load_gpt2_bpe, load_tokenizer_json, load_wordpiece_vocab
from polyformer.tokenizers.tokenizer import TOKENIZER_FILE, Tokenizer

_GPT2_FILE_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))
_WORDPIECE_FILE = "vocab.txt"
_SENTENCE_TRANSFORMERS_MODULE = "0_Transformer"
_LOOKED_FOR = ("tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, vocab.txt, "
               "char_tokenizer.json or one .gguf file")


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer | CharTokenizer:
    """The tokenizer at `path` (a file, a directory, a run directory, a catalog name or a hub id)."""
    location = resolve(path, TokenizerError)
    found = _read(location)
    if found is None:
        raise TokenizerError(f"{location}: no tokenizer found; expected {_LOOKED_FOR}")
    return found


def find_tokenizer(path: str | os.PathLike[str]) -> Tokenizer | CharTokenizer | None:
    """The tokenizer at `path`, or None when its folder holds no tokenizer files (a model saved without one).

    Tokenizer files that are there but broken are still a TokenizerError.
    """
    return _read(resolve(path, TokenizerError))


def _read(location: Path) -> Tokenizer | CharTokenizer | None:
    return _load_file(location) if location.is_file() else _load_dir(location)


def _load_file(file: Path) -> Tokenizer | CharTokenizer:
    name = file.name.lower()
    if name == CHAR_TOKENIZER_FILE:
        return CharTokenizer.load(file)
    if name.endswith(".gguf"):
        return load_gguf_tokenizer(file)
    if name == _WORDPIECE_FILE:
        return load_wordpiece_vocab(file)
    for vocab_name, merges_name in _GPT2_FILE_PAIRS:
        if name in (vocab_name, merges_name):
            return _load_gpt2_pair(file.parent, vocab_name, merges_name)
    if name.endswith(".json"):
        return load_tokenizer_json(file)
    raise TokenizerError(f"{file}: unknown tokenizer file; expected {_LOOKED_FOR}")


def _load_dir(directory: Path) -> Tokenizer | CharTokenizer | None:
    if (directory / CHAR_TOKENIZER_FILE).is_file():
        return CharTokenizer.load(directory / CHAR_TOKENIZER_FILE)
    if (directory / TOKENIZER_FILE).is_file():
        return load_tokenizer_json(directory / TOKENIZER_FILE)
    for vocab_name, merges_name in _GPT2_FILE_PAIRS:
        if (directory / vocab_name).is_file():
            return _load_gpt2_pair(directory, vocab_name, merges_name)
    if (directory / _WORDPIECE_FILE).is_file():
        return load_wordpiece_vocab(directory / _WORDPIECE_FILE)
    ggufs = sorted(directory.glob("*.gguf"))
    if len(ggufs) == 1:
        return load_gguf_tokenizer(ggufs[0])
    if len(ggufs) > 1:
        names = ", ".join(g.name for g in ggufs)
        raise TokenizerError(f"{directory}: holds several GGUF files ({names}); pass one of them")
    if (directory / _SENTENCE_TRANSFORMERS_MODULE).is_dir():
        return _load_dir(directory / _SENTENCE_TRANSFORMERS_MODULE)
    return None


def _load_gpt2_pair(directory: Path, vocab_name: str, merges_name: str) -> Tokenizer:
    vocab, merges = directory / vocab_name, directory / merges_name
    for needed in (vocab, merges):
        if not needed.is_file():
            raise TokenizerError(f"{needed}: missing; a GPT-2 tokenizer needs both {vocab_name} and {merges_name}")
    return load_gpt2_bpe(vocab, merges)
