"""all-MiniLM-L6-v2 sentence encoding on CPU: polyformer's SentenceEncoder vs sentence-transformers.

Both encode the same Rotten Tomatoes snippets with the same weights, batch size and thread count;
the result reports sentences/s for each, their ratio, and how closely the embeddings agree
(cosine per sentence, min and mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.timing import log, peak_rss_mb, time_alternating

MODEL = "all-MiniLM-L6-v2"


@dataclass
class EncodeSettings:
    texts: int = 2000
    batch_size: int = 32
    repeats: int = 3


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def run(settings: EncodeSettings | None = None) -> dict:
    """Time both encoders; returns a JSON-ready record."""
    settings = settings or EncodeSettings()
    from sentence_transformers import SentenceTransformer

    import polyformer as pf
    from polyformer.data import catalog
    from polyformer.data.readers import read_rotten_tomatoes

    texts = [row["text"] for row in read_rotten_tomatoes()[: settings.texts]]
    ours = pf.SentenceEncoder.load(MODEL)
    theirs = SentenceTransformer(str(catalog.fetch(MODEL)), device="cpu")
    results: dict[str, np.ndarray] = {}

    def encode_ours() -> None:
        results["polyformer"] = ours.encode(texts, batch_size=settings.batch_size, show_progress=False)

    def encode_theirs() -> None:
        results["sentence-transformers"] = theirs.encode(
            texts, batch_size=settings.batch_size, convert_to_numpy=True, show_progress_bar=False
        )

    log(f"encode: {len(texts)} texts x {settings.repeats} repeats, batch {settings.batch_size}")
    timings = time_alternating({"polyformer": encode_ours, "sentence-transformers": encode_theirs}, settings.repeats)
    cos = cosines(results["polyformer"], results["sentence-transformers"])
    rates = {name: len(texts) / timing.median_s for name, timing in timings.items()}
    return {
        "work": f"{MODEL} encode, {len(texts)} Rotten Tomatoes snippets, batch {settings.batch_size}",
        "texts": len(texts),
        "sentences_per_s": rates,
        "ratio": rates["polyformer"] / rates["sentence-transformers"],
        "ratio_best": timings["sentence-transformers"].best_s / timings["polyformer"].best_s,
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "truncated": ours.last_truncated,
        "timings": {name: timing.as_dict() for name, timing in timings.items()},
        "peak_rss_mb": peak_rss_mb(),
    }
