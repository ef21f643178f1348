"""Run the CPU benchmarks, print a markdown table and write `benchmarks/results/cpu.json`.

    python -m benchmarks.run                # everything, 2 threads
    python -m benchmarks.run --only encode  # one benchmark: encode | forward | train
    python -m benchmarks.run --quick        # fewer texts and repeats (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from benchmarks import cpu_encode, cpu_forward, cpu_train
from benchmarks.timing import markdown_table

RESULTS = Path(__file__).parent / "results" / "cpu.json"
HEADERS = ["work", "polyformer (median)", "reference (median)", "ratio median (best run)", "agreement"]


def encode_rows(record: dict) -> list[list[object]]:
    rates = record["sentences_per_s"]
    return [[
        record["work"],
        f"{rates['polyformer']:.1f} sent/s",
        f"{rates['sentence-transformers']:.1f} sent/s (sentence-transformers)",
        f"{record['ratio']:.2f}x ({record['ratio_best']:.2f}x)",
        f"cos min {record['cosine_min']:.6f} / mean {record['cosine_mean']:.6f}",
    ]]


def forward_rows(record: dict) -> list[list[object]]:
    if "skipped" in record:
        return [["SmolLM2-135M prefill", "skipped", record["skipped"], "", ""]]
    return [[
        f"SmolLM2-135M prefill B{row['batch']} x T{row['length']}",
        f"{row['ms']['polyformer']:.1f} ms, {row['tokens_per_s']['polyformer']:,.0f} tok/s",
        f"{row['ms']['transformers']:.1f} ms, {row['tokens_per_s']['transformers']:,.0f} tok/s (transformers)",
        f"{row['ratio']:.2f}x ({row['ratio_best']:.2f}x)",
        f"max |logit diff| {row['max_logit_diff']:.2g}",
    ] for row in record["shapes"]]


def train_rows(records: list[dict]) -> list[list[object]]:
    return [[
        record["work"],
        f"{record['tokens_per_s']['polyformer']:,.0f} tok/s",
        f"{record['tokens_per_s']['transformers']:,.0f} tok/s (transformers)",
        f"{record['ratio']:.2f}x ({record['ratio_best']:.2f}x)",
        "same weights, same step",
    ] for record in records]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["encode", "forward", "train"], help="run one benchmark")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer texts and repeats")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__},
    }
    rows: list[list[object]] = []
    if args.only in (None, "encode"):
        settings = cpu_encode.EncodeSettings(texts=200, repeats=1) if args.quick else cpu_encode.EncodeSettings()
        report["encode"] = cpu_encode.run(settings)
        rows += encode_rows(report["encode"])
    if args.only in (None, "forward"):
        settings = cpu_forward.ForwardSettings(shapes=[(1, 32)], repeats=1) if args.quick else cpu_forward.ForwardSettings()
        report["forward"] = cpu_forward.run(settings)
        rows += forward_rows(report["forward"])
    if args.only in (None, "train"):
        report["train"] = cpu_train.run(quick=args.quick)
        rows += train_rows(report["train"])
    print(markdown_table(HEADERS, rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
