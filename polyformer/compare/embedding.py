"""Embedding quality of every form: `embed-eval`'s figures before and after a short contrastive stage.

Each model is read as a `SentenceEncoder` with two poolings — the mean of the tokens, and the one
token its form summarises into (the encoder's [CLS], the decoder's and the encoder–decoder's last
token; the encoder–decoder embeds with its encoder stack) — and evaluated on the built-in sets
(`polyformer.embeddings.datasets`: continuation retrieval and clustering by play on held-out
Shakespeare, kNN sentiment on Rotten Tomatoes; scaled by `eval_limit`, see `eval_sets`), or on a
labelled file (clustering and kNN).
Then `train_contrastive` (embed-train's MultipleNegativesRanking on the Shakespeare continuation
pairs) trains it for `contrastive_steps` steps with that pooling, and the sets are evaluated again.
The PCA projection of the first clustering set (mean pooling, before the contrastive stage) goes
to the report.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from polyformer.embeddings.evaluation import EvalSets

PROJECTED_POINTS = 400
CONTRASTIVE_BATCH = 32


@functools.lru_cache(maxsize=4)
def eval_sets(data: str, size: int) -> EvalSets:
    """The built-in sets, scaled to `size` ("builtin"), or a labelled .jsonl/.csv file as a clustering and a kNN set.

    Built-in at `size` N: N/2 retrieval queries (and as many continuations), N/4 speeches from each
    of the four held-out plays, kNN on N training and N/2 test snippets — the sets of `embed-eval`,
    drawn the same way, smaller, so that twelve evaluations per model stay affordable on a CPU.
    """
    from polyformer.embeddings import datasets

    if data == "builtin":
        return EvalSets(
            retrieval={"shakespeare-continuation": datasets.shakespeare_retrieval(max(2, size // 2))},
            clustering={"shakespeare-plays": datasets.shakespeare_plays(max(2, size // 4))},
            classification={"rotten_tomatoes": datasets.rotten_tomatoes_knn(train=max(2, size), test=max(2, size // 2))},
        )
    labelled = datasets.read_labelled(data)
    name = Path(data).stem
    return EvalSets(clustering={name: labelled}, classification={name: datasets.split_labelled(labelled)})


def projection(encoder, sets: EvalSets) -> dict[str, Any] | None:
    """2-D PCA points (and labels) of the first clustering set's embeddings."""
    from sklearn.decomposition import PCA

    if not sets.clustering:
        return None
    name, data = next(iter(sets.clustering.items()))
    texts, labels = data.texts[:PROJECTED_POINTS], data.labels[:PROJECTED_POINTS]
    if len(texts) < 3:
        return None
    vectors = encoder.encode(texts, batch_size=64, normalize=True)
    points = PCA(n_components=2, random_state=0).fit_transform(vectors)
    return {"set": name, "points": np.round(points, 4).tolist(), "labels": list(map(str, labels))}


def _figures(encoder, sets: EvalSets, seed: int, prefix: str) -> dict[str, float]:
    from polyformer.embeddings.evaluation import evaluate_encoder

    results = evaluate_encoder(encoder, sets, seed=seed)
    return {f"{prefix}/{name}": value for name, value in results.items() if name != "seconds"}


def embedding_suite(ctx, poolings: list[tuple[str, str]]) -> dict[str, Any]:
    """Figures `<label>/<set>/<metric>` and `<label>+contrastive/<set>/<metric>` for each (pooling, label).

    Labels name the pooling the same way for every form ("mean", "token"), so the figures line up
    in the tables; `extra["poolings"]` says which pooling each label was (cls or last).
    """
    from polyformer.embeddings import SentenceEncoder
    from polyformer.embeddings.pairs import read_pair_files
    from polyformer.embeddings.training import train_contrastive
    from polyformer.tasks.models import load_pretrained
    from polyformer.tasks.recipe import inference_device
    from polyformer.training.trainer import TrainConfig

    spec = ctx.spec
    sets = eval_sets(spec.data_for("embed"), spec.eval_limit)
    pairs = read_pair_files(spec.data_for("contrastive"), "train")
    metrics: dict[str, float] = {}
    extra: dict[str, Any] = {"poolings": {label: pooling for pooling, label in poolings}}
    for pooling, label in poolings:
        model, tokenizer, _ = load_pretrained(ctx.entry.path)
        encoder = SentenceEncoder(model.to(inference_device(spec.device)), tokenizer, pooling=pooling,
                                  max_seq_length=spec.max_length)
        metrics.update(_figures(encoder, sets, ctx.seed, label))
        if "projection" not in extra:
            extra["projection"] = projection(encoder, sets)
        steps = spec.contrastive_steps
        config = TrainConfig(max_steps=steps, lr=spec.finetune_rate(), warmup_steps=max(1, steps // 10) if steps > 1 else 0,
                             weight_decay=0.01, betas=(0.9, 0.999), eval_batches=0, seed=ctx.seed, device=spec.device,
                             out_dir=str(ctx.run_dir / f"contrastive-{pooling}"), progress=False, tensorboard=False,
                             plot=False)
        train_contrastive(encoder, pairs, config, CONTRASTIVE_BATCH, write_model=False)
        metrics.update(_figures(encoder, sets, ctx.seed, f"{label}+contrastive"))
    return {"metrics": metrics, "budget": {"contrastive_steps": spec.contrastive_steps, "batch_size": CONTRASTIVE_BATCH},
            "extra": extra}
