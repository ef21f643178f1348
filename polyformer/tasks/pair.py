"""Sentence pairs: cross-encoder classification and similarity regression (the `pair` task).

The recipe itself is the sequence recipe on text pairs (classify.py). What is here is its
built-in data, `shakespeare`: is line B the real next line after line A, or a random line of the
same work? — BERT's next-sentence prediction as a fine-tuning task on real verse and prose.

How the data is built (deterministic, seed 1234):
- works split whole: 80% / 10% / 10% of the 42 works (seeded) to train / dev / test, so no line
  of a test work is ever seen in training;
- a line is a stripped line of 20–200 characters with a lower-case letter, not a bracketed
  stage direction (speaker tags such as "King." are shorter); A and B are consecutive such lines
  of one speech (one blank-line-separated block);
- half of the anchors get their real next line (label `next`), the other half a line drawn from
  the same work at least 20 lines away (label `random`); TRAIN_PAIRS / DEV_PAIRS / TEST_PAIRS
  pairs per split at most.
"""

from __future__ import annotations

import numpy as np

from polyformer.data.readers import read_shakespeare
from polyformer.tasks.classify import SequenceTask, TextExample
from polyformer.tasks.datasets import SPLIT_SEED, split_indices

PAIR_LABELS = ("next", "random")
SIZES = {"train": 8000, "dev": 1000, "test": 2000}
MIN_CHARS, MAX_CHARS, MIN_DISTANCE = 20, 200, 20
Line = tuple[int, str]  # (block number, text)


def verse_lines(text: str) -> list[Line]:
    """The kept lines of a work with the number of the block (speech) each belongs to."""
    lines: list[Line] = []
    block = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            block += 1
            continue
        if MIN_CHARS <= len(line) <= MAX_CHARS and any(c.islower() for c in line) and not line.startswith("["):
            lines.append((block, line))
    return lines


def next_line_pairs(works: list[tuple[str, str]], count: int, seed: int) -> list[TextExample]:
    """`count` (line, next line | random line) examples from the works, half of each label."""
    rng = np.random.default_rng([seed, count])
    per_work = [(name, verse_lines(text)) for name, text in works]
    anchors = [(w, i) for w, (_, lines) in enumerate(per_work) for i in range(len(lines) - 1)
               if lines[i][0] == lines[i + 1][0]]
    chosen = rng.permutation(len(anchors))[:count]
    examples = []
    for position, anchor in enumerate(chosen):
        work, index = anchors[int(anchor)]
        name, lines = per_work[work]
        other, label = index + 1, PAIR_LABELS[0]
        if position % 2:
            other, label = index, PAIR_LABELS[1]
            while abs(other - index) < MIN_DISTANCE:
                other = int(rng.integers(len(lines)))
        examples.append(TextExample(lines[index][1], lines[other][1], label=label, where=f"shakespeare:{name}:{index}"))
    return examples


def shakespeare_pairs(split: str) -> list[TextExample]:
    """The built-in pair data: one split (train / dev / test / all), split by work."""
    if split == "all":
        return [e for name in SIZES for e in shakespeare_pairs(name)]
    works = read_shakespeare()
    chosen = [works[i] for i in split_indices(len(works))[split]]
    return next_line_pairs(chosen, SIZES[split], SPLIT_SEED)


PAIR = SequenceTask("pair", pairs=True, builtin="shakespeare", builtin_split=shakespeare_pairs)
