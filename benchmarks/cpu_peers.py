"""polyformer against what CPU users pick instead, side by side in one run: llama.cpp and ONNX Runtime.

Decode (SmolLM2-135M-Instruct): llama.cpp (`llama-cpp-python`) on the shipped Q4_1 GGUF and on
F32 / F16 / Q8_0 files requantized from it by llama.cpp's own quantizer, against polyformer on the
same file at float32 (dequantized), bfloat16, int8 (`polyformer.precision`) and native (the file's
Q4_1 / Q8_0 blocks kept quantized, `polyformer.io.gguf_blocks`). Precisions are paired
F32 ~ float32, F16 ~ bfloat16, Q8_0 ~ int8, Q4_1 ~ native. Batch 1 and batch 8 (llama.cpp decodes
the batch as parallel sequences of one context), Shakespeare prompts, greedy, every contender
timed in alternation (`polyformer.bench.decode`). Reported: decode tok/s, TTFT, the peak RSS of
a process running that contender alone (`polyformer.bench.rss`), greedy agreement (with polyformer
float32 and with llama.cpp F32), perplexity of polyformer's precisions on held-out Shakespeare,
and, where native and float32 first disagree, the float32 logit gap between the two tokens.

Encode (all-MiniLM-L6-v2): ONNX Runtime fp32 (the transformers model exported with
torch.onnx, all graph optimisations) and int8 (`quantize_dynamic`) against polyformer float32,
bfloat16 and int8, on the same Rotten Tomatoes snippets, cosine to polyformer float32 and
retrieval nDCG@10 (as benchmarks/cpu_encode.py measures them).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from polyformer.bench import peers, rss
from polyformer.bench.decode import agreement, measure_decode, polyformer_decoder
from polyformer.bench.timing import log, peak_rss_mb, time_alternating

MODEL = "SmolLM2-135M-Instruct"
PAIRS = {"float32": "F32", "bfloat16": "F16", "int8": "Q8_0", "native": "Q4_1"}
WORK = Path(tempfile.gettempdir()) / "polyformer-bench-peers"


@dataclass
class PeerSettings:
    batches: list[int] = field(default_factory=lambda: [1, 8])
    prompt_tokens: int = 32
    new_tokens: int = 32
    repeats: int = 3
    encode_texts: int = 2000
    encode_repeats: int = 3
    retrieval_queries: int = 1000


def _gguf_files(source: Path) -> dict[str, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    files = {"Q4_1": source}
    for precision in ("F32", "F16", "Q8_0"):
        files[precision] = peers.requantize(source, WORK / f"{source.stem.split('.')[0]}.{precision}.gguf", precision)
    return files


def _logit_gap(model, prompt: torch.Tensor, ours: torch.Tensor, theirs: torch.Tensor) -> dict | None:
    """Where two greedy rows first differ: the position and `model`'s logit margin between the two tokens."""
    differ = (ours != theirs).nonzero()
    if len(differ) == 0:
        return None
    position = int(differ[0])
    with torch.inference_mode():
        logits = model(torch.cat([prompt, theirs[:position]])[None]).logits[0, -1].float()
    return {"position": position, "logit_gap": float(logits[theirs[position]] - logits[ours[position]])}


def _decoders(path: Path, files: dict[str, Path], batch: int, length: int) -> tuple[dict, dict]:
    import polyformer as pf

    decoders, models = {}, {}
    for precision, peer in PAIRS.items():
        models[precision] = pf.load(path, dtype=None if precision == "native" else precision)
        decoders[f"polyformer {precision}"] = _warm(polyformer_decoder(models[precision]))
        decoders[f"llama.cpp {peer}"] = _warm(peers.LlamaCppDecoder(files[peer], torch.get_num_threads(), batch, length))
    return decoders, models


def decode_memory(path: Path, files: dict[str, Path]) -> dict[str, float]:
    """Peak RSS (MiB) of a process that loads one contender and decodes 8 tokens, and of one that loads nothing."""
    threads = torch.get_num_threads()
    memory = {"baseline (python, torch, polyformer)": rss.peak_rss_mb("baseline")}
    for precision, peer in PAIRS.items():
        memory[f"polyformer {precision}"] = rss.peak_rss_mb("decode", str(path), precision, threads)
        memory[f"llama.cpp {peer}"] = rss.peak_rss_mb("llama.cpp", str(files[peer]), "", threads)
    return memory


def _warm(decoder):
    decoder(torch.tensor([[100, 200, 300]]), 2)
    return decoder


def decode_batch(path: Path, files: dict[str, Path], batch: int, settings: PeerSettings, tokenizer) -> dict:
    from benchmarks.cpu_decode import shakespeare_prompts

    prompts = shakespeare_prompts(tokenizer, batch, settings.prompt_tokens)
    decoders, models = _decoders(path, files, batch, settings.prompt_tokens + settings.new_tokens + 8)
    log(f"peers decode: batch {batch}, {len(decoders)} contenders, {settings.repeats} repeats")
    results = measure_decode(decoders, prompts, settings.new_tokens, settings.repeats)
    fp32, llama_f32 = results["polyformer float32"].tokens, results["llama.cpp F32"].tokens
    rows = {name: {"tokens_per_s": r.tokens_per_s, "tokens_per_s_best": r.tokens_per_s_best, "ttft_ms": r.ttft_ms,
                   "ms_per_step": r.ms_per_step,
                   "agreement_with_polyformer_fp32": agreement(r.tokens, fp32),
                   "agreement_with_llama_cpp_f32": agreement(r.tokens, llama_f32)} for name, r in results.items()}
    ratios = {precision: {"polyformer / llama.cpp": results[f"polyformer {precision}"].tokens_per_s / results[f"llama.cpp {peer}"].tokens_per_s,
                          "best runs": results[f"polyformer {precision}"].tokens_per_s_best / results[f"llama.cpp {peer}"].tokens_per_s_best,
                          "ttft llama.cpp / polyformer": results[f"llama.cpp {peer}"].ttft_ms / results[f"polyformer {precision}"].ttft_ms}
              for precision, peer in PAIRS.items()}
    gaps = [_logit_gap(models["float32"], prompts[row], results["polyformer native"].tokens[row], fp32[row]) for row in range(batch)]
    for decoder in decoders.values():
        if isinstance(decoder, peers.LlamaCppDecoder):
            decoder.close()
    return {"batch": batch, "contenders": rows, "ratios": ratios, "native_vs_fp32_first_differences": gaps}


def run_decode(settings: PeerSettings) -> dict:
    import polyformer as pf
    from benchmarks.cpu_decode import HELD_OUT_WORK, perplexity
    from polyformer.data import catalog
    from polyformer.data.readers import read_shakespeare

    path = catalog.fetch(MODEL)
    tokenizer = pf.load_tokenizer(path)
    files = _gguf_files(path)
    held_out = torch.tensor([tokenizer.encode(dict(read_shakespeare())[HELD_OUT_WORK][20_000:], add_special_tokens=False)[:1024]])
    quality = {precision: perplexity(pf.load(path, dtype=None if precision == "native" else precision), held_out) for precision in PAIRS}
    return {
        "work": f"{MODEL} greedy decode, {settings.prompt_tokens}-token prompts, {settings.new_tokens} new tokens",
        "files_mb": {name: file.stat().st_size / 2**20 for name, file in files.items()},
        "batches": [decode_batch(path, files, batch, settings, tokenizer) for batch in settings.batches],
        "peak_rss_mb_alone": decode_memory(path, files),
        "perplexity": quality,
        "perplexity_text": f"1024 tokens of {HELD_OUT_WORK}",
        "peak_rss_mb": peak_rss_mb(),
    }


def run_encode(settings: PeerSettings) -> dict:
    import polyformer as pf
    from benchmarks.cpu_encode import cosines, retrieval_quality
    from polyformer.data import catalog
    from polyformer.data.readers import read_rotten_tomatoes

    folder = catalog.fetch("all-MiniLM-L6-v2")
    texts = [row["text"] for row in read_rotten_tomatoes()[: settings.encode_texts]]
    WORK.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    encoders, memory = {}, {"baseline (python, torch, polyformer)": rss.peak_rss_mb("baseline")}
    for dtype in ("float32", "bfloat16", "int8"):
        encoder = pf.SentenceEncoder.load(folder, dtype=dtype)
        encoders[f"polyformer {dtype}"] = lambda t, e=encoder: e.encode(t, batch_size=32, show_progress=False)
        memory[f"polyformer {dtype}"] = rss.peak_rss_mb("encode", str(folder), dtype, threads)
    for int8 in (False, True):
        name = f"onnxruntime {'int8' if int8 else 'fp32'}"
        onnx = peers.export_onnx(folder, WORK / f"minilm{'-int8' if int8 else ''}.onnx", int8=int8)
        encoder = peers.OnnxEncoder(onnx, folder, threads)
        encoders[name] = lambda t, e=encoder: e.encode(t, batch_size=32)
        memory[name] = rss.peak_rss_mb("onnxruntime", f"{onnx}::{folder}", "", threads)
    vectors: dict[str, np.ndarray] = {}
    log(f"peers encode: {len(texts)} texts, {len(encoders)} contenders, {settings.encode_repeats} repeats")
    timings = time_alternating({name: (lambda name=name: vectors.__setitem__(name, encoders[name](texts))) for name in encoders},
                               settings.encode_repeats)
    base = retrieval_quality(encoders["polyformer float32"], settings.retrieval_queries)
    rows = {}
    for name, timing in timings.items():
        cos = cosines(vectors[name], vectors["polyformer float32"])
        retrieval = base if name == "polyformer float32" else retrieval_quality(encoders[name], settings.retrieval_queries)
        rows[name] = {"sentences_per_s": len(texts) / timing.median_s, "sentences_per_s_best": len(texts) / timing.best_s,
                      "peak_rss_mb_alone": memory[name], "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                      "ndcg@10": retrieval["ndcg@10"], "ndcg@10_delta": retrieval["ndcg@10"] - base["ndcg@10"]}
    ratios = {f"polyformer {ours} / onnxruntime {theirs}":
              rows[f"polyformer {ours}"]["sentences_per_s"] / rows[f"onnxruntime {theirs}"]["sentences_per_s"]
              for ours, theirs in (("float32", "fp32"), ("bfloat16", "fp32"), ("int8", "int8"), ("bfloat16", "int8"))}
    return {"work": f"all-MiniLM-L6-v2 encode, {len(texts)} Rotten Tomatoes snippets, batch 32", "contenders": rows, "ratios": ratios,
            "peak_rss_mb_baseline": memory["baseline (python, torch, polyformer)"]}


def run(settings: PeerSettings | None = None) -> dict:
    """Both comparisons; a JSON-ready record (`skipped` where a peer is not installed)."""
    settings = settings or PeerSettings()
    found = peers.available()
    return {
        "decode": run_decode(settings) if found["llama.cpp"] else {"skipped": "pip install -r requirements-bench.txt (llama-cpp-python)"},
        "encode": run_encode(settings) if found["onnxruntime"] else {"skipped": "pip install -r requirements-bench.txt (onnxruntime, onnx)"},
    }
