"""What `polyformer bench` runs: a user's model at each asked precision, and the installed peers.

Contenders are loaded and warmed one at a time, so the resident memory each one adds (model,
caches, one warm request) is measured on its own; then all are timed together in alternation.
Decode prompts are random token ids (seeded): speed does not depend on what the text says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polyformer.bench import peers
from polyformer.bench.decode import agreement, measure_decode, polyformer_decoder
from polyformer.bench.timing import log, memory_added, peak_rss_mb, time_alternating
from polyformer.errors import ConfigError

DECODE_HEADERS = ["contender", "decode tok/s (best run)", "ms/step", "TTFT ms", "memory added MiB", "greedy = first row"]
ENCODE_HEADERS = ["contender", "sentences/s (best run)", "ratio to first", "memory added MiB", "cosine to first (min)"]


@dataclass
class BenchRequest:
    model: str
    task: str = "auto"
    dtypes: list[str] | None = None
    batch: int | None = None
    prompt_tokens: int = 32
    new_tokens: int = 32
    inputs: Path | None = None
    texts: int = 500
    repeats: int = 3
    peers: bool = True
    seed: int = 0


def _load_decoder(path: Path, dtype: str):
    import polyformer as pf

    if dtype == "native" and path.suffix != ".gguf":
        raise ConfigError(f"--dtype native keeps a GGUF file's own blocks; {path} is not a .gguf file")
    return pf.load(path, dtype=None if dtype == "native" else dtype)


def _decode(request: BenchRequest, path: Path) -> dict:
    batch = request.batch or 1
    dtypes = request.dtypes or (["native"] if path.suffix == ".gguf" else ["float32"])
    decoders, memory, vocab = {}, {}, None
    for dtype in dtypes:
        model = _load_decoder(path, dtype)
        vocab = model.config.vocab_size
        prompts = torch.randint(min(100, vocab // 2), vocab, (batch, request.prompt_tokens),
                                generator=torch.Generator().manual_seed(request.seed))
        decoders[f"polyformer {dtype}"], memory[f"polyformer {dtype}"] = memory_added(
            lambda m=model: _warm(polyformer_decoder(m), prompts))
    if request.peers and path.suffix == ".gguf" and peers.available()["llama.cpp"]:
        length = request.prompt_tokens + request.new_tokens + 8
        decoders["llama.cpp (same file)"], memory["llama.cpp (same file)"] = memory_added(
            lambda: _warm(peers.LlamaCppDecoder(path, torch.get_num_threads(), batch, length), prompts))
    log(f"bench: decode, batch {batch}, {request.prompt_tokens}-token prompts, {request.new_tokens} new tokens, "
        f"{request.repeats} repeats of {len(decoders)} contenders")
    results = measure_decode(decoders, prompts, request.new_tokens, request.repeats)
    first = results[next(iter(results))].tokens
    rows = [[name, f"{r.tokens_per_s:,.1f} ({r.tokens_per_s_best:,.1f})", f"{r.ms_per_step:.1f}", f"{r.ttft_ms:.0f}",
             f"{memory[name]:,.0f}", _agreement_cell(agreement(r.tokens, first))] for name, r in results.items()]
    record = {name: {"tokens_per_s": r.tokens_per_s, "tokens_per_s_best": r.tokens_per_s_best, "ttft_ms": r.ttft_ms,
                     "ms_per_step": r.ms_per_step, "memory_added_mb": memory[name],
                     "agreement_with_first": agreement(r.tokens, first)} for name, r in results.items()}
    return {"task": "decode", "batch": batch, "contenders": record, "headers": DECODE_HEADERS, "rows": rows}


def _warm(decoder, prompts: torch.Tensor):
    decoder(prompts, 2)
    return decoder


def _agreement_cell(agree: dict) -> str:
    return f"{agree['identical_rows']}/{agree['rows']} rows, {agree['prefix_fraction']:.0%} before a difference"


def _texts(request: BenchRequest) -> list[str]:
    if request.inputs is not None:
        lines = [line.strip() for line in request.inputs.read_text(encoding="utf-8").splitlines()]
        found = [line for line in lines if line]
        if not found:
            raise ConfigError(f"{request.inputs}: no texts (one per line)")
        return found[: request.texts]
    from polyformer.data.readers import read_rotten_tomatoes

    return [row["text"] for row in read_rotten_tomatoes()[: request.texts]]


def _encoders(request: BenchRequest, path: Path, texts: list[str]) -> tuple[dict, dict]:
    from polyformer.embeddings import SentenceEncoder
    from polyformer.io.loader import transformer_folder

    batch, dtypes = request.batch or 32, request.dtypes or ["float32"]
    encoders, memory = {}, {}
    for dtype in dtypes:
        def build(dtype=dtype):
            encoder = SentenceEncoder.load(path, dtype=dtype)
            encoder.encode(texts[:batch], batch_size=batch, show_progress=False)
            return lambda: encoder.encode(texts, batch_size=batch, show_progress=False)
        encoders[f"polyformer {dtype}"], memory[f"polyformer {dtype}"] = memory_added(build)
    if request.peers and path.is_dir() and peers.available()["onnxruntime"]:
        import tempfile

        folder, work = transformer_folder(path), Path(tempfile.mkdtemp(prefix="polyformer-bench-"))
        for int8 in (False, True) if "int8" in dtypes else (False,):
            name = f"onnxruntime {'int8' if int8 else 'fp32'}"
            onnx = peers.export_onnx(folder, work / f"model{'-int8' if int8 else ''}.onnx", int8=int8)
            def build(onnx=onnx):
                encoder = peers.OnnxEncoder(onnx, folder, torch.get_num_threads())
                encoder.encode(texts[:batch], batch)
                return lambda: encoder.encode(texts, batch)
            encoders[name], memory[name] = memory_added(build)
    return encoders, memory


def _encode(request: BenchRequest, path: Path) -> dict:
    texts = _texts(request)
    encoders, memory = _encoders(request, path, texts)
    vectors: dict[str, np.ndarray] = {}
    fns = {name: (lambda name=name: vectors.__setitem__(name, encoders[name]())) for name in encoders}
    log(f"bench: encode, {len(texts)} texts, {request.repeats} repeats of {len(fns)} contenders")
    timings = time_alternating(fns, request.repeats)
    first = next(iter(encoders))
    record, rows = {}, []
    for name, timing in timings.items():
        cos = (vectors[name] * vectors[first]).sum(1) / (np.linalg.norm(vectors[name], axis=1) * np.linalg.norm(vectors[first], axis=1))
        record[name] = {"sentences_per_s": len(texts) / timing.median_s, "sentences_per_s_best": len(texts) / timing.best_s,
                        "ratio_to_first": timings[first].median_s / timing.median_s, "memory_added_mb": memory[name],
                        "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean())}
        row = record[name]
        rows.append([name, f"{row['sentences_per_s']:,.1f} ({row['sentences_per_s_best']:,.1f})", f"{row['ratio_to_first']:.2f}x",
                     f"{memory[name]:,.0f}", f"{row['cosine_min']:.6f}"])
    return {"task": "encode", "texts": len(texts), "contenders": record, "headers": ENCODE_HEADERS, "rows": rows}


def _task(request: BenchRequest, path: Path) -> str:
    if request.task != "auto":
        return request.task
    if path.suffix == ".gguf":
        return "decode"
    import polyformer as pf

    return "decode" if pf.load(path).config.head == "lm" else "encode"


def run(request: BenchRequest) -> dict:
    """Measure the request; a JSON-ready record with the table's headers and rows and a summary line."""
    from polyformer.locations import resolve

    path = resolve(request.model)
    task = _task(request, path)
    record = _decode(request, path) if task == "decode" else _encode(request, path)
    installed = ", ".join(name for name, found in peers.available().items() if found) or "none"
    record.update(model=request.model, threads=torch.get_num_threads(), repeats=request.repeats, peak_rss_mb=peak_rss_mb(),
                  summary=f"{record['task']} on {torch.get_num_threads()} threads, medians of {request.repeats}; "
                          f"peers installed: {installed}; process peak RSS {peak_rss_mb():,.0f} MiB")
    return record
