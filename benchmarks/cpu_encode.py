"""all-MiniLM-L6-v2 sentence encoding on CPU: polyformer's SentenceEncoder vs sentence-transformers.

All variants encode the same Rotten Tomatoes snippets with the same weights and thread count, timed
in alternation (polyformer/bench/timing.py). Variants:

- `sentence-transformers` fp32, batch 32: the reference;
- `polyformer fp32`: the defaults for batch_size 32 (length-sorted batches of up to 32 x 128
  padded tokens, no per-batch overhead);
- `polyformer fp32 max_tokens=N`: a larger token budget;
- `polyformer bfloat16`: the whole model in bfloat16 (SentenceEncoder dtype="bfloat16");
- `polyformer int8`: weight-only int8 linear layers (polyformer.precision.apply_precision).

Each reports sentences/s, the ratio to sentence-transformers and the cosine of its vectors with
the reference (min and mean per sentence). Retrieval quality of every polyformer variant is
measured on the built-in Shakespeare continuation set (1,000 queries; recall@10, nDCG@10) and
compared with polyformer fp32: the reduced-precision target is within 0.005.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from polyformer.bench.timing import log, peak_rss_mb, time_alternating

MODEL = "all-MiniLM-L6-v2"
REFERENCE = "sentence-transformers"


@dataclass
class EncodeSettings:
    texts: int = 2000
    batch_size: int = 32
    max_tokens: int = 16384
    repeats: int = 5  # single runs vary by about ±10% on a 2-core machine; the median of 5 is steadier
    precisions: tuple[str, ...] = ("bfloat16", "int8")
    retrieval: bool = True
    retrieval_queries: int = 1000


@dataclass
class Variant:
    name: str
    encode: Callable[[list[str]], np.ndarray]
    dtype: str = "float32"
    extra: dict = field(default_factory=dict)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def variants(settings: EncodeSettings, device: str = "cpu") -> list[Variant]:
    """sentence-transformers and the polyformer encoders, as functions of a list of texts."""
    from sentence_transformers import SentenceTransformer

    import polyformer as pf
    from polyformer.data import catalog

    theirs = SentenceTransformer(str(catalog.fetch(MODEL)), device=device)
    fp32 = pf.SentenceEncoder.load(MODEL, device=device)
    out = [
        Variant(REFERENCE, lambda t: theirs.encode(t, batch_size=settings.batch_size, convert_to_numpy=True, show_progress_bar=False)),
        Variant("polyformer fp32", lambda t: fp32.encode(t, batch_size=settings.batch_size, show_progress=False)),
        Variant(f"polyformer fp32 max_tokens={settings.max_tokens}",
                lambda t: fp32.encode(t, max_tokens=settings.max_tokens, show_progress=False)),
    ]
    for dtype in settings.precisions:
        encoder = pf.SentenceEncoder.load(MODEL, device=device, dtype=dtype)
        out.append(Variant(f"polyformer {dtype}", lambda t, e=encoder: e.encode(t, batch_size=settings.batch_size, show_progress=False), dtype))
    return out


def retrieval_quality(encode: Callable[[list[str]], np.ndarray], queries: int) -> dict[str, float]:
    from polyformer.embeddings.datasets import shakespeare_retrieval
    from polyformer.embeddings.evaluation import retrieval_metrics

    data = shakespeare_retrieval(queries)
    metrics = retrieval_metrics(encode(data.queries), encode(data.corpus), data.relevant)
    return {key: metrics[key] for key in ("recall@10", "ndcg@10")}


def measure(found: list[Variant], texts: list[str], settings: EncodeSettings) -> dict:
    """Time every variant in alternation; rates, ratios, agreement and retrieval quality."""
    vectors: dict[str, np.ndarray] = {}

    def timed(variant: Variant) -> Callable[[], None]:
        def run() -> None:
            vectors[variant.name] = variant.encode(texts)
        return run

    timings = time_alternating({v.name: timed(v) for v in found}, settings.repeats)
    reference = vectors[REFERENCE]
    rows = {}
    for variant in found:
        timing = timings[variant.name]
        cos = cosines(vectors[variant.name], reference)
        rows[variant.name] = {
            "sentences_per_s": len(texts) / timing.median_s,
            "ratio": timings[REFERENCE].median_s / timing.median_s,
            "ratio_best": timings[REFERENCE].best_s / timing.best_s,
            "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()),
            "timing": timing.as_dict(),
        }
    if settings.retrieval:
        for variant in found:
            rows[variant.name]["retrieval"] = retrieval_quality(variant.encode, settings.retrieval_queries)
        base = rows["polyformer fp32"]["retrieval"]
        for row in rows.values():
            row["retrieval_delta"] = {k: row["retrieval"][k] - base[k] for k in base}
    return rows


def run(settings: EncodeSettings | None = None) -> dict:
    """Time all CPU variants; returns a JSON-ready record."""
    settings = settings or EncodeSettings()
    from polyformer.data.readers import read_rotten_tomatoes

    texts = [row["text"] for row in read_rotten_tomatoes()[: settings.texts]]
    found = variants(settings)
    log(f"encode: {len(texts)} texts x {settings.repeats} repeats, {len(found)} variants")
    return {
        "work": f"{MODEL} encode, {len(texts)} Rotten Tomatoes snippets, CPU",
        "texts": len(texts),
        "batch_size": settings.batch_size,
        "max_tokens": settings.max_tokens,
        "variants": measure(found, texts, settings),
        "peak_rss_mb": peak_rss_mb(),
    }
