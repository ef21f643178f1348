"""Character-level tokenizer: one token per character, as in nanoGPT's shakespeare-char setting.

Its vocabulary is the sorted set of characters of a training corpus, saved as
`char_tokenizer.json`; `load_tokenizer` recognises that file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from polyformer.errors import TokenizerError
from polyformer.runtime import write_atomic

CHAR_TOKENIZER_FILE = "char_tokenizer.json"


class CharTokenizer:
    """One token per character (nanoGPT's shakespeare-char); no special tokens.

    Characters outside the vocabulary are skipped when encoding (there is no unknown token).
    """

    def __init__(self, chars: Sequence[str]) -> None:
        ordered = sorted(set(chars))
        if not ordered or any(len(c) != 1 for c in ordered):
            raise TokenizerError("a character vocabulary needs one or more single characters")
        self.chars: tuple[str, ...] = tuple(ordered)
        self._ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """The vocabulary of every character in `texts`, sorted."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        if not seen:
            raise TokenizerError("cannot build a character vocabulary from an empty corpus")
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return self.vocab_size

    pad_token_id = bos_token_id = eos_token_id = unk_token_id = None
    cls_token_id = sep_token_id = mask_token_id = None

    @property
    def special_ids(self) -> set[int]:
        return set()

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of the characters of `text` (`add_special_tokens` is accepted and has no effect)."""
        ids = self._ids
        return [ids[c] for c in text if c in ids]

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        values = ids.tolist() if hasattr(ids, "tolist") else ids
        try:
            return "".join(self.chars[i] for i in ([values] if isinstance(values, int) else values))
        except (IndexError, TypeError):
            raise TokenizerError(f"ids must be ints below {self.vocab_size}") from None

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True) -> list[str]:
        rows = sequences.tolist() if hasattr(sequences, "tolist") else sequences
        return [self.decode(row) for row in rows]

    def config(self) -> dict[str, str]:
        """What `save` writes: the vocabulary as one string, in id order."""
        return {"type": "char", "chars": "".join(self.chars)}

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `char_tokenizer.json` into `directory` (atomically); returns the directory."""
        write_atomic(Path(directory) / CHAR_TOKENIZER_FILE, json.dumps(self.config(), indent=2) + "\n")
        return Path(directory)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        """Read a saved character tokenizer (its directory or the JSON file)."""
        file = Path(path)
        file = file / CHAR_TOKENIZER_FILE if file.is_dir() else file
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            return cls(list(data["chars"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TokenizerError(f"{file}: not a character tokenizer ({exc})") from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
