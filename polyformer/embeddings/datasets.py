"""Evaluation data for embeddings: the built-in sets and readers for a user's own files.

Built-in (all from the catalog, all deterministic):

- `shakespeare-continuation` (retrieval): 1,000 speech halves from the four held-out plays
  (the same split as polyformer.data.corpus: never seen by contrastive training on the
  `shakespeare-continuation` pairs); each first half is a query, the 1,000 second halves are the
  corpus, and a query's one relevant document is its own continuation.
- `shakespeare-plays` (clustering): 200 speeches (2 lines or more, at most 8) from each held-out
  play, labelled by play: k-means with k = 4 should find the plays.
- `rotten_tomatoes` (kNN sentiment): 1,000 test snippets (the hash-ranked hold-out of
  polyformer.data.corpus.held_out over snippet indices) and 2,000 training snippets drawn from
  the rest with a seeded generator; labels fresh / rotten.

Files (`.jsonl` or `.csv`, fields as in the CLI conventions):

- retrieval: a folder in the BEIR layout — `queries.jsonl` and `corpus.jsonl` (`_id` or `id`,
  `text`, optional `title`) and `qrels.tsv` or `qrels/test.tsv` (`query-id`, `corpus-id`,
  `score`; a header line; rows with score > 0 are relevant);
- clustering and classification: `text` and `label` (classification: a seeded 80/20 split);
- similarity: `text_a`, `text_b` and `score`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from polyformer.data.corpus import _field, _records, held_out
from polyformer.data.readers import read_rotten_tomatoes
from polyformer.embeddings.evaluation import ClassificationSet, EvalSets, LabelledSet, RetrievalSet, ScoredPairs
from polyformer.embeddings.pairs import MAX_SPEECH_LINES, continuation_pairs, shakespeare_works, speeches
from polyformer.errors import DataError

SEED = 0
RETRIEVAL_QUERIES = 1000
SPEECHES_PER_PLAY = 200
KNN_TRAIN, KNN_TEST = 2000, 1000


def shakespeare_retrieval(count: int = RETRIEVAL_QUERIES, seed: int = SEED) -> RetrievalSet:
    pairs = continuation_pairs("validation")
    picked = np.sort(np.random.default_rng(seed).choice(len(pairs), size=min(count, len(pairs)), replace=False))
    chosen = [pairs[i] for i in picked]
    return RetrievalSet([a for a, _ in chosen], [b for _, b in chosen], [{i} for i in range(len(chosen))])


def shakespeare_plays(per_play: int = SPEECHES_PER_PLAY, seed: int = SEED) -> LabelledSet:
    texts, labels = [], []
    for name, text in shakespeare_works("validation"):
        found = [" ".join(lines[:MAX_SPEECH_LINES]) for lines in speeches(text) if len(lines) >= 2]
        picked = np.sort(np.random.default_rng([seed, len(texts)]).choice(len(found), size=min(per_play, len(found)), replace=False))
        texts += [found[i] for i in picked]
        labels += [name] * len(picked)
    return LabelledSet(texts, labels)


def rotten_tomatoes_knn(train: int = KNN_TRAIN, test: int = KNN_TEST, seed: int = SEED) -> ClassificationSet:
    rows = read_rotten_tomatoes()
    test_keys = held_out((str(i) for i in range(len(rows))), fraction=test / len(rows))
    test_rows = [row for i, row in enumerate(rows) if str(i) in test_keys]
    rest = [row for i, row in enumerate(rows) if str(i) not in test_keys]
    picked = np.sort(np.random.default_rng(seed).choice(len(rest), size=min(train, len(rest)), replace=False))
    train_rows = [rest[i] for i in picked]
    return ClassificationSet(_labelled(train_rows), _labelled(test_rows))


def _labelled(rows: list[dict[str, str]]) -> LabelledSet:
    return LabelledSet([row["text"] for row in rows], [row["label"] for row in rows])


def builtin_sets() -> EvalSets:
    """Retrieval and clustering on held-out Shakespeare, kNN sentiment on Rotten Tomatoes."""
    return EvalSets(
        retrieval={"shakespeare-continuation": shakespeare_retrieval()},
        clustering={"shakespeare-plays": shakespeare_plays()},
        classification={"rotten_tomatoes": rotten_tomatoes_knn()},
    )


# ---- files -----------------------------------------------------------------------------------------
def read_retrieval_dir(directory: str | Path) -> RetrievalSet:
    """A BEIR-layout folder: queries.jsonl, corpus.jsonl and qrels.tsv (or qrels/test.tsv)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: a retrieval set is a folder with queries.jsonl, corpus.jsonl and qrels.tsv")
    queries = _id_texts(directory / "queries.jsonl")
    corpus = _id_texts(directory / "corpus.jsonl")
    qrels = next((p for p in (directory / "qrels.tsv", directory / "qrels" / "test.tsv") if p.is_file()), None)
    if qrels is None:
        raise DataError(f"{directory}: no qrels.tsv (or qrels/test.tsv) with query-id, corpus-id, score")
    query_index = {key: i for i, key in enumerate(queries)}
    doc_index = {key: i for i, key in enumerate(corpus)}
    relevant: list[set[int]] = [set() for _ in queries]
    with qrels.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if line == 1 and row and not row[-1].lstrip("-").isdigit():
                continue  # the header
            if len(row) != 3:
                raise DataError(f"{qrels}:{line}: expected query-id<TAB>corpus-id<TAB>score")
            query, doc, score = row
            if query not in query_index or doc not in doc_index:
                kind, key = ("query", query) if query not in query_index else ("document", doc)
                raise DataError(f"{qrels}:{line}: unknown {kind} id {key!r}")
            if float(score) > 0:
                relevant[query_index[query]].add(doc_index[doc])
    keep = [i for i, wanted in enumerate(relevant) if wanted]
    if not keep:
        raise DataError(f"{qrels}: no relevant (score > 0) query-document pair")
    names = list(queries)
    return RetrievalSet([queries[names[i]] for i in keep], list(corpus.values()), [relevant[i] for i in keep])


def _id_texts(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out: dict[str, str] = {}
    for where, record in _records(path):
        key = record.get("_id", record.get("id"))
        if key is None:
            raise DataError(f"{where}: missing field '_id' (or 'id')")
        title = record.get("title") or ""
        text = _field(record, "text", where)
        out[str(key)] = f"{title}. {text}" if title else text
    return out


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label") -> LabelledSet:
    texts, labels = [], []
    for where, record in _records(_existing(path)):
        texts.append(_field(record, text_field, where))
        if record.get(label_field) in (None, ""):
            raise DataError(f"{where}: missing field {label_field!r}")
        labels.append(str(record[label_field]))
    if not texts:
        raise DataError(f"{path}: no records")
    return LabelledSet(texts, labels)


def split_labelled(data: LabelledSet, test_fraction: float = 0.2, seed: int = SEED) -> ClassificationSet:
    order = np.random.default_rng(seed).permutation(len(data.texts))
    cut = max(1, int(round(test_fraction * len(order))))
    if cut >= len(order):
        raise DataError(f"kNN classification needs at least 2 labelled texts, got {len(order)}")
    return ClassificationSet(_subset(data, order[cut:]), _subset(data, order[:cut]))


def _subset(data: LabelledSet, indices: np.ndarray) -> LabelledSet:
    return LabelledSet([data.texts[i] for i in indices], [data.labels[i] for i in indices])


def read_scored_pairs(path: str | Path) -> ScoredPairs:
    a, b, scores = [], [], []
    for where, record in _records(_existing(path)):
        a.append(_field(record, "text_a", where))
        b.append(_field(record, "text_b", where))
        try:
            scores.append(float(record["score"]))
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: field 'score' must be a number, got {record.get('score')!r}") from None
    return ScoredPairs(a, b, scores)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix not in (".jsonl", ".csv"):
        raise DataError(f"{path}: expected a .jsonl or .csv file")
    return path


__all__ = [
    "builtin_sets", "read_labelled", "read_retrieval_dir", "read_scored_pairs", "rotten_tomatoes_knn",
    "shakespeare_plays", "shakespeare_retrieval", "split_labelled",
]
