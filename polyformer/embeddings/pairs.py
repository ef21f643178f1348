"""Training pairs for contrastive learning: files of (anchor, positive[, negative]) and a built-in set.

Files are `.jsonl` objects or `.csv` rows with fields `anchor` and `positive` (or `text_a` and
`text_b`), and optionally `negative` — a hard negative for the anchor. Every record of a file set
must have the same number of texts.

The built-in set `shakespeare-continuation` is made of speeches from Shakespeare's plays (the
catalog's `shakespeare`): a speech of 2 or more lines (its first 8 lines at most) is cut in half;
the first half is the anchor and the second half — what the same speaker says next — its
positive. The training pairs come from the training works of the catalog's document split and the
evaluation pairs from the four held-out works (polyformer.data.corpus.held_out), so evaluation
never sees a training play.

`PairSource` serves them to the trainer (the BatchSource protocol): the rows of a step are drawn
without replacement by a generator seeded with (seed, step, micro), so a row never meets its own
duplicate as a negative, the data order is a pure function of the step, and ranks split the rows.
Texts are tokenized per batch with the encoder's own settings; a batch is `input_ids` and
`attention_mask` of shape (B, C, T), padded to its longest text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from polyformer.data.collators import pad_batch
from polyformer.data.corpus import _field, _records, held_out
from polyformer.data.readers import read_shakespeare
from polyformer.data.sources import rank_rows
from polyformer.errors import DataError

if TYPE_CHECKING:
    from polyformer.embeddings.encoder import SentenceEncoder

Pair = tuple[str, ...]  # (anchor, positive) or (anchor, positive, negative)
BUILTIN_PAIRS = ("shakespeare-continuation",)
_SPEAKER = re.compile(r"^[A-Z][A-Z0-9' ,&\-]*\.?$")  # "GLOUCESTER." / "FIRST CITIZEN." / "LYSANDER"
_FIELDS = (("anchor", "text_a"), ("positive", "text_b"))
MAX_SPEECH_LINES = 8
MIN_SPEECH_LINES = 2


# ---- Shakespeare speeches ----------------------------------------------------------------------------
def speeches(text: str) -> list[list[str]]:
    """The speeches of a play: the lines of every blank-line block that starts with a SPEAKER. line.

    Blocks of names (the list of characters) are not speeches and are left out.
    """
    found: list[list[str]] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if len(lines) >= 2 and _SPEAKER.match(lines[0]) and not any(_names(line) for line in lines[1:]):
            found.append(lines[1:])
    return found


def _names(line: str) -> bool:
    """A line of a character list: mostly capital letters ('EARL OF SURREY.', 'SCROOP, Archbishop')."""
    letters = [c for c in line if c.isalpha()]
    return bool(_SPEAKER.match(line)) or sum(c.isupper() for c in letters) > len(letters) / 2


def shakespeare_works(split: str) -> list[tuple[str, str]]:
    """(work, text) of the catalog's training works ('train') or its held-out works ('validation')."""
    works = read_shakespeare()
    validation = held_out(name for name, _ in works)
    if split not in ("train", "validation"):
        raise DataError(f"split must be 'train' or 'validation', got {split!r}")
    return [(name, text) for name, text in works if (name in validation) == (split == "validation")]


def continuation_pairs(split: str = "train") -> list[Pair]:
    """(first half of a speech, its second half) for every long enough speech of the split's works."""
    pairs: list[Pair] = []
    for _, text in shakespeare_works(split):
        for lines in speeches(text):
            if len(lines) >= MIN_SPEECH_LINES:
                lines = lines[:MAX_SPEECH_LINES]
                half = len(lines) // 2
                pairs.append((" ".join(lines[:half]), " ".join(lines[half:])))
    return pairs


# ---- files -------------------------------------------------------------------------------------------
def read_pair_files(spec: str | Path | Sequence[str | Path], split: str = "train") -> list[Pair]:
    """Pairs of a built-in set (its `split`) or of jsonl/csv files (all records; `split` is ignored)."""
    if isinstance(spec, str) and spec in BUILTIN_PAIRS:
        return continuation_pairs(split)
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not items:
        raise DataError("no training pairs given: pass a .jsonl/.csv file or " + " / ".join(BUILTIN_PAIRS))
    pairs: list[Pair] = []
    for item in items:
        path = Path(item)
        if not path.is_file():
            raise DataError(f"{path}: no such file, and not a built-in pair set ({', '.join(BUILTIN_PAIRS)})")
        if path.suffix not in (".jsonl", ".csv"):
            raise DataError(f"{path}: pairs are read from .jsonl or .csv files with fields anchor, positive[, negative]")
        for where, record in _records(path):
            pair = tuple(_text(record, names, where) for names in _FIELDS)
            if record.get("negative") not in (None, ""):
                pair += (_field(record, "negative", where),)
            if pairs and len(pair) != len(pairs[0]):
                raise DataError(f"{where}: every record needs the same fields; the first had {len(pairs[0])} texts, this one {len(pair)}")
            pairs.append(pair)
    if not pairs:
        raise DataError(f"{', '.join(map(str, items))}: no pairs")
    return pairs


def _text(record: dict, names: tuple[str, str], where: str) -> str:
    name = next((n for n in names if n in record), names[0])
    return _field(record, name, where)


# ---- the batch source --------------------------------------------------------------------------------
class PairSource:
    """Seeded batches of (B, C, T) token ids from pairs, tokenized with `encoder`'s settings."""

    def __init__(
        self,
        pairs: Sequence[Pair],
        encoder: SentenceEncoder,
        batch_size: int,
        seed: int = 0,
        validation: Sequence[Pair] | None = None,
        num_eval_batches: int | None = 10,
    ) -> None:
        if not pairs:
            raise DataError("no training pairs")
        if batch_size < 2:
            raise DataError(f"in-batch negatives need batch_size >= 2, got {batch_size}")
        if batch_size > len(pairs):
            raise DataError(f"batch_size {batch_size} is larger than the {len(pairs)} training pairs")
        columns = {len(pair) for pair in [*pairs, *(validation or [])]}
        if len(columns) != 1 or columns - {2, 3}:
            raise DataError(f"pairs must all be (anchor, positive) or all (anchor, positive, negative); got sizes {sorted(columns)}")
        self.pairs, self.validation = list(pairs), list(validation or [])
        self.encoder, self.batch_size, self.seed = encoder, batch_size, seed
        self.num_eval_batches = num_eval_batches

    def train_batch(self, step: int, micro: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        generator = np.random.default_rng([self.seed, step, micro])
        picked = generator.choice(len(self.pairs), size=self.batch_size, replace=False)
        rows = rank_rows(self.batch_size, rank, world_size)
        return self.collate([self.pairs[int(picked[r])] for r in rows])

    def eval_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for count, start in enumerate(range(0, len(self.validation) - 1, self.batch_size)):
            if self.num_eval_batches is not None and count >= self.num_eval_batches:
                return
            batch = self.validation[start:start + self.batch_size]
            if len(batch) >= 2:
                yield self.collate(batch)

    def collate(self, pairs: Sequence[Pair]) -> dict[str, torch.Tensor]:
        """(B, C, T) input_ids and attention_mask of the pairs' texts."""
        rows, columns = len(pairs), len(pairs[0])
        texts = [pair[c] for pair in pairs for c in range(columns)]  # row-major: (B·C)
        ids = self.encoder.token_ids(texts, report_truncation=False)
        input_ids, mask = pad_batch(ids, self.encoder.pad_id)
        return {"input_ids": input_ids.view(rows, columns, -1), "attention_mask": mask.view(rows, columns, -1)}


__all__ = ["BUILTIN_PAIRS", "PairSource", "continuation_pairs", "read_pair_files", "shakespeare_works", "speeches"]
