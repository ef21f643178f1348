"""all-MiniLM-L6-v2 sentence encoding on one GPU: polyformer vs sentence-transformers fp32 and fp16.

    python -m benchmarks.gpu_encode          # needs CUDA; prints a note and writes nothing without it

The same Rotten Tomatoes snippets as the CPU benchmark (benchmarks/cpu_encode.py), more of them
and larger batches. Variants: sentence-transformers fp32 and fp16 (`model.half()`), polyformer
fp32 and bfloat16 (the whole model, SentenceEncoder dtype="bfloat16"), both with a 32k-token budget.
Ratios are to sentence-transformers fp32; agreement is the cosine with its vectors.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.cpu_encode import MODEL, REFERENCE, EncodeSettings, Variant, measure
from polyformer.bench.timing import log, markdown_table

RESULTS = Path(__file__).parent / "results" / "gpu_encode.json"
SETTINGS = EncodeSettings(texts=10_000, batch_size=128, max_tokens=32_768, repeats=5, retrieval=False)


def gpu_variants(settings: EncodeSettings) -> list[Variant]:
    import torch
    from sentence_transformers import SentenceTransformer

    import polyformer as pf
    from polyformer.data import catalog

    folder = str(catalog.fetch(MODEL))

    def synced(encode):
        def run(texts):
            out = encode(texts)
            torch.cuda.synchronize()
            return out
        return run

    theirs = SentenceTransformer(folder, device="cuda")
    half = SentenceTransformer(folder, device="cuda").half()
    ours = pf.SentenceEncoder.load(MODEL, device="cuda")
    ours_bf16 = pf.SentenceEncoder.load(MODEL, device="cuda", dtype="bfloat16")
    st = dict(batch_size=settings.batch_size, convert_to_numpy=True, show_progress_bar=False)
    return [
        Variant(REFERENCE, synced(lambda t: theirs.encode(t, **st))),
        Variant("sentence-transformers fp16", synced(lambda t: half.encode(t, **st).astype("float32")), "float16"),
        Variant("polyformer fp32", synced(lambda t: ours.encode(t, max_tokens=settings.max_tokens, show_progress=False))),
        Variant("polyformer bfloat16", synced(lambda t: ours_bf16.encode(t, max_tokens=settings.max_tokens, show_progress=False)), "bfloat16"),
    ]


def run(settings: EncodeSettings = SETTINGS) -> dict:
    """A JSON-ready record, or {"skipped": reason} without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return {"work": f"{MODEL} encode, GPU", "skipped": "no CUDA device"}
    from polyformer.data.readers import read_rotten_tomatoes

    rows = read_rotten_tomatoes()
    texts = [rows[i % len(rows)]["text"] for i in range(settings.texts)]
    log(f"gpu encode: {len(texts)} texts x {settings.repeats} repeats on {torch.cuda.get_device_name()}")
    return {
        "work": f"{MODEL} encode, {len(texts)} Rotten Tomatoes snippets, {torch.cuda.get_device_name()}",
        "texts": len(texts),
        "variants": measure(gpu_variants(settings), texts, settings),
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
    }


def main(argv: list[str] | None = None) -> None:
    from benchmarks.run import HEADERS, encode_rows

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    record = run()
    print(markdown_table(HEADERS, encode_rows(record)))
    if "skipped" in record:
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
