"""Run the CPU benchmarks, print a markdown table and write `benchmarks/results/cpu.json`.

    python -m benchmarks.run                # everything, 2 threads
    python -m benchmarks.run --only encode  # some: linear, encode, forward, decode, train, peers, index, serve (comma-separated)
    python -m benchmarks.run --only decode,encode,train,peers   # every figure of the README's CPU tables
    python -m benchmarks.run --quick        # fewer texts and repeats (a smoke run)

`peers` (llama.cpp, ONNX Runtime) needs `pip install -r requirements-bench.txt` (`make bench` does it).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from benchmarks import (
    cpu_decode,
    cpu_encode,
    cpu_forward,
    cpu_linear,
    cpu_nanogpt,
    cpu_peers,
    cpu_train,
    gpu_encode,
    index_bench,
    serve_bench,
)
from polyformer.bench.timing import markdown_table

RESULTS = Path(__file__).parent / "results" / "cpu.json"
BENCHMARKS = ("linear", "encode", "forward", "decode", "train", "peers", "index", "serve")
HEADERS = ["work", "polyformer (median)", "reference (median)", "ratio median (best run)", "agreement"]


def encode_rows(record: dict) -> list[list[object]]:
    if "skipped" in record:
        return [[record["work"], "skipped", record["skipped"], "", ""]]
    rows = []
    reference = record["variants"][cpu_encode.REFERENCE]
    for name, row in record["variants"].items():
        if name == cpu_encode.REFERENCE:
            continue
        quality = f"cos min {row['cosine_min']:.6f} / mean {row['cosine_mean']:.6f}"
        if "retrieval_delta" in row:
            quality += f"; nDCG@10 {row['retrieval']['ndcg@10']:.4f} ({row['retrieval_delta']['ndcg@10']:+.4f} vs fp32)"
        rows.append([
            f"{record['work']}: {name}",
            f"{row['sentences_per_s']:.1f} sent/s",
            f"{reference['sentences_per_s']:.1f} sent/s ({cpu_encode.REFERENCE})",
            f"{row['ratio']:.2f}x ({row['ratio_best']:.2f}x)",
            quality,
        ])
    return rows


def index_rows(record: dict) -> list[list[object]]:
    return [[
        f"{row['kind']} index, {record['vectors']:,} x {record['dimension']}" + (f", {row['parameter']} {row['value']}" if row["parameter"] else ""),
        f"query {row['query_ms']:.2f} ms, build {row['build_s']:.1f} s",
        f"{row['faiss_query_ms']:.2f} ms (bare FAISS, 1 thread; {row['faiss_default_threads_query_ms']:.2f} ms default threads)",
        f"{row['faiss_query_ms'] / row['query_ms']:.2f}x",
        f"recall@10 {row['recall@10']:.3f}",
    ] for row in record["rows"]]


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


def decode_rows(record: dict) -> list[list[object]]:
    if "skipped" in record:
        return [["SmolLM2-135M decode", "skipped", record["skipped"], "", ""]]
    rows, quality = [], record["quality"]
    for row in record["batches"]:
        rates, ttft, theirs = row["decode_tokens_per_s"], row["ttft_ms"], "transformers"
        for name, ratio in row["ratio_vs_transformers"].items():
            if name == "polyformer":
                agree = row["agreement_with_transformers"]
                check = f"greedy = transformers: {agree['identical_rows']}/{agree['rows']} rows"
            else:
                agree = row["agreement_with_fp32"][name]
                check = f"vs fp32: {agree['identical_rows']}/{agree['rows']} rows identical, {agree['prefix_fraction']:.0%} before first difference"
                if name in quality:
                    check += f"; ppl {quality[name]['perplexity']:.2f} (fp32 {quality['polyformer']['perplexity']:.2f})"
            rows.append([
                f"SmolLM2-135M decode B{row['batch']}: {name}",
                f"{rates[name]:,.1f} tok/s ({row['ms_per_step'][name]:.1f} ms/step), TTFT {ttft[name]:.0f} ms",
                f"{rates[theirs]:,.1f} tok/s ({row['ms_per_step'][theirs]:.1f} ms/step), TTFT {ttft[theirs]:.0f} ms ({theirs})",
                f"{ratio:.2f}x ({row['ratio_vs_transformers_best_runs'][name]:.2f}x) decode, "
                f"{row['ttft_ratio_vs_transformers'][name]:.2f}x TTFT",
                check,
            ])
    return rows


def linear_rows(record: dict) -> list[list[object]]:
    reference = cpu_linear.REFERENCE
    return [[
        f"linear {row['m']} x {row['k']} → {row['n']}: {row['work']}",
        f"{row['ms']['polyformer']:.3f} ms, {row['gflop_per_s']['polyformer']:.0f} GFLOP/s, {row['weight_gb_per_s']['polyformer']:.1f} GB/s",
        f"{row['ms'][reference]:.3f} ms, {row['gflop_per_s'][reference]:.0f} GFLOP/s, {row['weight_gb_per_s'][reference]:.1f} GB/s ({reference})",
        f"{row['ratio']:.2f}x ({row['ratio_best']:.2f}x)",
        f"max |diff| {row['max_abs_diff']:.2g}",
    ] for row in record["shapes"]]


def train_rows(records: list[dict]) -> list[list[object]]:
    rows = []
    for record in records:
        theirs = next(name for name in record["tokens_per_s"] if name != "polyformer")
        rows.append([
            record["work"],
            f"{record['tokens_per_s']['polyformer']:,.0f} tok/s",
            f"{record['tokens_per_s'][theirs]:,.0f} tok/s ({theirs})",
            f"{record['ratio']:.2f}x ({record['ratio_best']:.2f}x)",
            "same weights, same step" if theirs == "transformers" else "same architecture and seed, same step",
        ])
    return rows


def peer_rows(record: dict) -> list[list[object]]:
    rows = []
    decode, encode = record["decode"], record["encode"]
    for batch in decode.get("batches", []):
        for precision, peer in cpu_peers.PAIRS.items():
            ours, theirs = batch["contenders"][f"polyformer {precision}"], batch["contenders"][f"llama.cpp {peer}"]
            ratio = batch["ratios"][precision]
            agree = ours["agreement_with_polyformer_fp32"]
            rss = decode["peak_rss_mb_alone"]
            rows.append([
                f"SmolLM2 decode B{batch['batch']}: polyformer {precision} vs llama.cpp {peer}",
                f"{ours['tokens_per_s']:,.1f} tok/s, TTFT {ours['ttft_ms']:.0f} ms, peak RSS {rss[f'polyformer {precision}']:,.0f} MiB",
                f"{theirs['tokens_per_s']:,.1f} tok/s, TTFT {theirs['ttft_ms']:.0f} ms, peak RSS {rss[f'llama.cpp {peer}']:,.0f} MiB",
                f"{ratio['polyformer / llama.cpp']:.2f}x ({ratio['best runs']:.2f}x)",
                f"vs fp32 {agree['identical_rows']}/{agree['rows']} rows; ppl {decode['perplexity'][precision]:.2f}",
            ])
    for name, row in encode.get("contenders", {}).items():
        rows.append([f"MiniLM encode: {name}", f"{row['sentences_per_s']:,.1f} sent/s, peak RSS {row['peak_rss_mb_alone']:,.0f} MiB", "", "",
                     f"cos min {row['cosine_min']:.6f}; nDCG@10 {row['ndcg@10']:.4f} ({row['ndcg@10_delta']:+.4f})"])
    for name, ratio in encode.get("ratios", {}).items():
        rows.append([f"MiniLM encode ratio: {name}", "", "", f"{ratio:.2f}x", ""])
    for part in ("decode", "encode"):
        if "skipped" in record[part]:
            rows.append([f"peers {part}", "skipped", record[part]["skipped"], "", ""])
    return rows


def _benchmarks(value: str) -> set[str]:
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = names - set(BENCHMARKS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=_benchmarks, help=f"comma-separated benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer texts and repeats")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default {RESULTS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__},
    }
    rows: list[list[object]] = []
    if _wanted(args, "linear"):
        settings = cpu_linear.LinearSettings(repeats=3) if args.quick else cpu_linear.LinearSettings()
        report["linear"] = cpu_linear.run(settings)
        rows += linear_rows(report["linear"])
    if _wanted(args, "encode"):
        settings = cpu_encode.EncodeSettings(texts=200, repeats=1, retrieval_queries=100) if args.quick else cpu_encode.EncodeSettings()
        report["encode"] = cpu_encode.run(settings)
        rows += encode_rows(report["encode"])
        report["encode_gpu"] = gpu_encode.run()
        rows += encode_rows(report["encode_gpu"])
    if _wanted(args, "forward"):
        settings = cpu_forward.ForwardSettings(shapes=[(1, 32)], repeats=1) if args.quick else cpu_forward.ForwardSettings()
        report["forward"] = cpu_forward.run(settings)
        rows += forward_rows(report["forward"])
    if _wanted(args, "decode"):
        settings = cpu_decode.DecodeSettings(batches=[1, 4], new_tokens=8, repeats=1, ppl_tokens=128, variants=(("int8", False),)) \
            if args.quick else cpu_decode.DecodeSettings()
        report["decode"] = cpu_decode.run(settings)
        rows += decode_rows(report["decode"])
    if _wanted(args, "train"):
        report["train"] = cpu_train.run(quick=args.quick)
        report["train_nanogpt"] = cpu_nanogpt.run(quick=args.quick)
        rows += train_rows(report["train"] + report["train_nanogpt"])
    if _wanted(args, "peers"):
        settings = cpu_peers.PeerSettings(batches=[1], new_tokens=8, repeats=1, encode_texts=200, encode_repeats=1,
                                          retrieval_queries=100) if args.quick else cpu_peers.PeerSettings()
        report["peers"] = cpu_peers.run(settings)
        rows += peer_rows(report["peers"])
    if _wanted(args, "index"):
        settings = index_bench.IndexSettings(vectors=5000, queries=20) if args.quick else index_bench.IndexSettings()
        report["index"] = index_bench.run(settings)
        rows += index_rows(report["index"])
    if _wanted(args, "serve"):
        report["serve"] = serve_bench.run(serve_bench.settings_for(args.quick, args.threads))
        rows += serve_bench.rows(report["serve"])
    print(markdown_table(HEADERS, rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def _wanted(args: argparse.Namespace, name: str) -> bool:
    return args.only is None or name in args.only


if __name__ == "__main__":
    main()
