"""Training throughput on one GPU: polyformer vs transformers, bf16, on the same weights and step.

    python -m benchmarks.gpu_train                 # the SPEC.md §5 shapes; needs CUDA
    python -m benchmarks.gpu_train --smoke         # tiny shapes on whatever device there is (a check of this script)

Work (SPEC.md §5): GPT-2 124M at B16 × T1024 and BERT-base masked-LM at T128 and T512, bf16
autocast, fused AdamW. polyformer runs compiled (`torch.compile`); transformers runs eager and
compiled. Reported per shape: tokens/s of each, the ratios, model FLOPs utilisation and peak
memory. MFU follows nanoGPT / PaLM:

    flops per token = 6 · N + 12 · L · H · T        (N parameters without position tables,
                                                     L layers, H hidden size, T sequence length)
    MFU = tokens/s · flops per token / peak bf16 FLOP/s of the device

Peak bf16 dense throughput is read from PEAK_BF16_TFLOPS by device name (H100/H200 SXM: 989.5).
Without CUDA (and without --smoke) the script prints a note and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.cpu_train import TrainShape, hf_model, random_batch, step_fn
from polyformer.bench.timing import log, markdown_table, time_alternating

RESULTS = Path(__file__).parent / "results" / "gpu_train.json"
PEAK_BF16_TFLOPS = {"H100": 989.5, "H200": 989.5, "A100": 312.0, "L4": 121.0}

SHAPES = [
    TrainShape("GPT-2 124M", "gpt2", 16, 1024, dict(vocab_size=50257, n_positions=1024)),
    TrainShape("BERT-base MLM T128", "bert", 256, 128, dict(vocab_size=30522)),
    TrainShape("BERT-base MLM T512", "bert", 64, 512, dict(vocab_size=30522)),
]
SMOKE_SHAPES = [
    TrainShape("GPT-2 tiny", "gpt2", 2, 64, dict(vocab_size=512, n_positions=64, n_embd=64, n_layer=2, n_head=2)),
    TrainShape("BERT tiny MLM", "bert", 2, 64, dict(vocab_size=512, hidden_size=64, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=128)),
]


@dataclass(frozen=True)
class Settings:
    shapes: tuple[TrainShape, ...] = tuple(SHAPES)
    repeats: int = 10
    warmup: int = 3  # compiled graphs are built during warm-up, never timed
    compile: bool = True


def flops_per_token(model: torch.nn.Module, shape: TrainShape) -> float:
    """6·N + 12·L·H·T, N excluding position-embedding tables (they cost no matmul FLOPs)."""
    config = model.config
    positions = model.embeddings.positions
    params = model.num_parameters() - (positions.weight.numel() if positions is not None else 0)
    return 6 * params + 12 * config.num_layers * config.hidden_size * shape.length


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def _peak_memory_gb(fn, device: torch.device) -> float | None:
    """Peak memory of one more call of `fn`, in GiB (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def _synchronized(fn, device: torch.device):
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run


def run_shape(shape: TrainShape, settings: Settings, device: torch.device) -> dict:
    import polyformer as pf

    torch.manual_seed(0)
    reference = hf_model(shape).train()
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(Path(tmp))
        ours = pf.load(tmp).train().to(device)
    reference = reference.to(device)
    ids, labels = (t.to(device) for t in random_batch(shape, shape.hf_config["vocab_size"]))
    bf16 = torch.bfloat16
    compiled = settings.compile
    fns = {"polyformer": step_fn(ours, ids, labels, True, bf16, torch.compile(ours) if compiled else None),
           "transformers": step_fn(reference, ids, labels, False, bf16)}
    if compiled:
        fns["transformers (compiled)"] = step_fn(reference, ids, labels, False, bf16, torch.compile(reference))
    fns = {name: _synchronized(fn, device) for name, fn in fns.items()}
    log(f"gpu_train: {shape.name} B{shape.batch} x T{shape.length} on {device}")
    timings = time_alternating(fns, repeats=settings.repeats, warmup=settings.warmup)
    tokens = shape.batch * shape.length
    rates = {name: tokens / timing.median_s for name, timing in timings.items()}
    peak, per_token = peak_flops(device), flops_per_token(ours, shape)
    return {
        "work": f"train step {shape.name}, B{shape.batch} x T{shape.length}, bf16",
        "tokens_per_s": rates,
        "ratio_vs_eager": rates["polyformer"] / rates["transformers"],
        "ratio_vs_compiled": rates["polyformer"] / rates["transformers (compiled)"] if compiled else None,
        "mfu": {name: rate * per_token / peak for name, rate in rates.items()} if peak else None,
        "flops_per_token": per_token,
        "peak_memory_gb": {name: _peak_memory_gb(fn, device) for name, fn in fns.items()},
        "timings": {name: timing.as_dict() for name, timing in timings.items()},
    }


def rows(records: list[dict]) -> list[list[object]]:
    out = []
    for record in records:
        rates, mfu, memory = record["tokens_per_s"], record["mfu"] or {}, record["peak_memory_gb"]
        mfu_text = f", MFU {mfu['polyformer']:.0%}" if mfu else ""
        mem_text = f", {memory['polyformer']:.1f} GiB" if memory.get("polyformer") else ""
        compiled = record["ratio_vs_compiled"]
        out.append([
            record["work"],
            f"{rates['polyformer']:,.0f} tok/s{mfu_text}{mem_text}",
            f"{rates['transformers']:,.0f} eager" + (f" / {rates['transformers (compiled)']:,.0f} compiled" if compiled else "") + " tok/s",
            f"{record['ratio_vs_eager']:.2f}x eager" + (f", {compiled:.2f}x compiled" if compiled else ""),
        ])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 2 repeats, no compile, any device")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        print("gpu_train: no CUDA device; nothing measured (use --smoke to check the script on CPU)")
        return
    settings = Settings(tuple(SMOKE_SHAPES), repeats=2, warmup=1, compile=False) if args.smoke else Settings()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    records = [run_shape(shape, settings, device) for shape in settings.shapes]
    print(markdown_table(["work", "polyformer", "transformers", "ratio"], rows(records)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"machine": {"device": name, "torch": torch.__version__}, "train": records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
