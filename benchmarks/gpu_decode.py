"""GPT-2 124M decode on one GPU, bf16: polyformer vs `transformers.generate` on the same weights.

    python -m benchmarks.gpu_decode            # needs CUDA; without it prints a note and writes nothing
    python -m benchmarks.gpu_decode --smoke    # a tiny GPT-2 on whatever device there is (checks the script)

polyformer decodes with its static KV cache and the one-token step compiled by `torch.compile`
(mode "reduce-overhead": a CUDA graph replayed every step); transformers runs `generate` as
users call it. Both get the same random-init GPT-2 124M weights in bfloat16, the same prompts
(batch 1 and 32, 32 tokens) and decode exactly `new_tokens` greedy tokens. Every variant runs
`warmup` times first (graphs are captured then, never timed), then alternately `repeats` times.

Weight-bandwidth roofline at batch 1: a decode step reads every weight once, so

    tokens/s  <=  HBM bandwidth / parameter bytes,   parameter bytes = N parameters x 2 (bf16)

e.g. GPT-2 124M on an H100 SXM: 3.35e12 B/s / (124.4e6 x 2 B) = 13.5k tokens/s. The bandwidth
is read from HBM_TB_PER_S by device name (or given with --bandwidth-tb-s).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from polyformer.bench.timing import log, markdown_table, time_alternating

RESULTS = Path(__file__).parent / "results" / "gpu_decode.json"
HBM_TB_PER_S = {"H200": 4.8, "H100": 3.35, "A100": 2.04, "L40": 0.86, "A10": 0.6, "L4": 0.3, "4090": 1.01}
GPT2_124M = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}
GPT2_TINY = {"vocab_size": 512, "n_positions": 256, "n_embd": 64, "n_layer": 2, "n_head": 2, "bos_token_id": 1,
             "eos_token_id": 2}


@dataclass
class Settings:
    shape: dict = field(default_factory=lambda: dict(GPT2_124M))
    batches: tuple[int, ...] = (1, 32)
    prompt_tokens: int = 32
    new_tokens: int = 128
    repeats: int = 5
    warmup: int = 2
    compile: bool = True


def bandwidth_bytes_per_s(device: torch.device, override_tb_s: float | None = None) -> float | None:
    if override_tb_s:
        return override_tb_s * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tb * 1e12 for key, tb in HBM_TB_PER_S.items() if key in name), None)


def roofline_tokens_per_s(parameters: int, bandwidth: float | None, bytes_per_parameter: int = 2) -> float | None:
    """Batch-1 decode bound: bandwidth / (parameters x bytes per parameter)."""
    return None if bandwidth is None else bandwidth / (parameters * bytes_per_parameter)


def models(settings: Settings, device: torch.device):
    """The same random-init GPT-2 as transformers' GPT2LMHeadModel and as a polyformer model, bf16."""
    import transformers

    import polyformer as pf

    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings.shape)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(Path(tmp))
        ours = pf.load(tmp)
    return ours.to(device, torch.bfloat16).eval(), reference.to(device, torch.bfloat16)


def run(settings: Settings | None = None, device: torch.device | None = None, bandwidth_tb_s: float | None = None) -> dict:
    """Time both at every batch size; a {"skipped": ...} record without CUDA."""
    settings = settings or Settings()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and settings.shape == GPT2_124M:
        return {"skipped": "no CUDA device"}
    from polyformer.generation import generate, make_config

    ours, theirs = models(settings, device)
    bandwidth = bandwidth_bytes_per_s(device, bandwidth_tb_s)
    roofline = roofline_tokens_per_s(ours.num_parameters(), bandwidth)
    compile_step = settings.compile and device.type == "cuda"
    rows = []
    for batch in settings.batches:
        generator = torch.Generator().manual_seed(batch)
        ids = torch.randint(0, settings.shape["vocab_size"], (batch, settings.prompt_tokens), generator=generator).to(device)
        mask = torch.ones_like(ids)
        outputs: dict[str, torch.Tensor] = {}

        def ours_fn(new: int):
            config = make_config(max_new_tokens=new, min_new_tokens=new, cache="static", compile=compile_step)
            return _synced(lambda: outputs.__setitem__(f"polyformer x{new}", generate(ours, ids, mask, config).sequences), device)

        def theirs_fn(new: int):
            def call() -> None:
                with torch.inference_mode():
                    out = theirs.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                                          min_new_tokens=new, pad_token_id=0)
                outputs[f"transformers x{new}"] = out[:, ids.shape[1]:]
            return _synced(call, device)

        fns = {}
        for new in (1, settings.new_tokens):
            fns[("polyformer", new)], fns[("transformers", new)] = ours_fn(new), theirs_fn(new)
        log(f"gpu_decode: batch {batch}, {settings.prompt_tokens}-token prompts, {settings.new_tokens} new tokens on {device}")
        timings = time_alternating(fns, settings.repeats, warmup=settings.warmup)
        rows.append(_row(batch, settings, timings, outputs, roofline))
    return {
        "work": f"GPT-2 {ours.num_parameters() / 1e6:.1f}M greedy decode, bf16, {device}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "parameters": ours.num_parameters(),
        "bandwidth_bytes_per_s": bandwidth,
        "roofline_tokens_per_s_batch1": roofline,
        "roofline_formula": "HBM bandwidth / (parameters x 2 bytes)",
        "compiled": compile_step,
        "batches": rows,
    }


def _synced(fn, device: torch.device):
    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return call


def _row(batch: int, settings: Settings, timings: dict, outputs: dict, roofline: float | None) -> dict:
    new = settings.new_tokens
    ttft = {name: timings[(name, 1)].median_s for name in ("polyformer", "transformers")}
    decode = {name: batch * (new - 1) / max(timings[(name, new)].median_s - ttft[name], 1e-9) for name in ttft}
    same = outputs[f"polyformer x{new}"] == outputs[f"transformers x{new}"]
    return {
        "batch": batch,
        "decode_tokens_per_s": decode,
        "ttft_ms": {name: value * 1000 for name, value in ttft.items()},
        "ratio_vs_transformers": decode["polyformer"] / decode["transformers"],
        "fraction_of_roofline": decode["polyformer"] / roofline if roofline and batch == 1 else None,
        "greedy_tokens_equal": float(same.float().mean()),  # bf16 kernels differ: agreement, not identity
        "timings": {f"{name} x{length}": timing.as_dict() for (name, length), timing in timings.items()},
    }


def rows(record: dict) -> list[list[object]]:
    out = []
    for row in record["batches"]:
        rates, roof = row["decode_tokens_per_s"], row["fraction_of_roofline"]
        roof_text = f", {roof:.0%} of the {record['roofline_tokens_per_s_batch1']:,.0f} tok/s roofline" if roof else ""
        out.append([
            f"GPT-2 decode B{row['batch']}, bf16",
            f"{rates['polyformer']:,.0f} tok/s, TTFT {row['ttft_ms']['polyformer']:.1f} ms{roof_text}",
            f"{rates['transformers']:,.0f} tok/s, TTFT {row['ttft_ms']['transformers']:.1f} ms",
            f"{row['ratio_vs_transformers']:.2f}x",
            f"{row['greedy_tokens_equal']:.0%} of greedy tokens equal",
        ])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny GPT-2, few tokens, any device, no compile")
    parser.add_argument("--bandwidth-tb-s", type=float, default=None, help="HBM bandwidth when the device is not in the table")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = Settings(shape=dict(GPT2_TINY), batches=(1, 4), new_tokens=8, repeats=1, warmup=1, compile=False) \
        if args.smoke else Settings()
    record = run(settings, bandwidth_tb_s=args.bandwidth_tb_s)
    if "skipped" in record:
        print(f"gpu_decode: {record['skipped']}; nothing measured (use --smoke to check the script on CPU)")
        return
    print(markdown_table(["work", "polyformer", "transformers", "ratio", "agreement"], rows(record)))
    if record["roofline_tokens_per_s_batch1"]:
        print(f"\nroofline at batch 1: {record['roofline_formula']} = {record['roofline_tokens_per_s_batch1']:,.0f} tok/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"decode": record}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
