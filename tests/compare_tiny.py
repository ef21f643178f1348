"""Tiny local data for the comparison tests: a corpus, labelled texts, pairs — seconds per run.

`write_data(folder)` writes every file `polyformer compare` needs so that no catalog item is read:
a blank-line-separated corpus (pretraining, perplexity, generation), sentiment records
(classify, zero-shot, embed's clustering / kNN), contrastive pairs and translation pairs.
`compare_args(folder, out, tasks)` is the command line of a micro-sized run on them.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ("king", "queen", "love", "night", "sword", "crown", "heart", "death", "sweet", "fair", "lord", "grave")
GOOD = ("a gripping and clever thriller", "wonderful acting and a moving story", "the best film of the year",
        "a joyful funny delight", "a warm and tender tale", "brilliant and bold")
BAD = ("dull lifeless and far too long", "a boring mess with no story", "the worst script in years",
       "tedious and badly acted", "a cold and empty film", "clumsy and loud")


def _line(i: int, j: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3 + k * 5) % len(WORDS)] for k in range(5 + (i + j) % 4))


def write_data(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    docs = ["\n".join(_line(i, j) for j in range(8)) for i in range(60)]
    corpus = folder / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n")
    rows = [{"text": f"{text} {WORDS[i % 12]}", "label": label}
            for i in range(5) for label, texts in (("fresh", GOOD), ("rotten", BAD)) for text in texts]
    sentiment = folder / "sentiment.jsonl"
    sentiment.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": _line(i, 0), "positive": _line(i, 1)}) + "\n" for i in range(64)))
    translation = folder / "translation.jsonl"
    translation.write_text("".join(json.dumps({"text_a": _line(i, 2), "text_b": _line(i, 2)[::-1]}) + "\n" for i in range(40)))
    return {"corpus": corpus, "sentiment": sentiment, "pairs": pairs, "translation": translation}


def compare_args(files: dict[str, Path], out: Path, tasks: str, seeds: int = 1, budget: int = 6000) -> list[str]:
    """A micro-sized from-scratch comparison on the tiny files."""
    return ["compare", "--data", str(files["corpus"]), "--size", "micro", "--budget-tokens", str(budget),
            "--seeds", str(seeds), "--tasks", tasks, "--vocab-size", "200", "--block-size", "32", "--batch-size", "8",
            "--finetune-steps", "4", "--finetune-batch-size", "8", "--contrastive-steps", "2", "--eval-limit", "20",
            "--max-new-tokens", "8", "--max-length", "32", "--save-every", "5", "--device", "cpu",
            "--task-data", f"classify={files['sentiment']}", "--task-data", f"zero-shot={files['sentiment']}",
            "--task-data", f"embed={files['sentiment']}", "--task-data", f"contrastive={files['pairs']}",
            "--task-data", f"translate={files['translation']}", "--out", str(out)]
