"""`polyformer bench --model M`: decode or encode speed of a model on this machine, as benchmarks/ measures it.

    polyformer bench --model SmolLM2-135M-Instruct --dtype native,float32,int8 --batch 1
    polyformer bench --model all-MiniLM-L6-v2 --task encode --dtype float32,bfloat16,int8

Every contender warms up, then all are timed in alternation (medians of `--repeats`):
decode reports time to first token, decode tokens/s and greedy agreement with the first dtype;
encode reports sentences/s and the cosine of each vector with the first dtype's. Each row also
says how much resident memory loading and warming that contender added (a lower bound: memory an
earlier contender freed is reused; `python -m polyformer.bench.rss` measures one alone). The peers a CPU user
would pick instead are timed beside polyformer when they are installed (`pip install -r
requirements-bench.txt`): llama.cpp on the same GGUF file for decode, ONNX Runtime (fp32, and
int8 when int8 is asked for) on the same weights for encode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

TASKS = ("auto", "decode", "encode")


def bench(
    model: str = typer.Option(..., "--model", help="Catalog name, model folder or .gguf file."),
    task: str = typer.Option("auto", "--task", help="decode | encode (auto: decode for models with an LM head)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Comma-separated: native (a GGUF file's own blocks), float32, bfloat16, int8."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Decode: prompts decoded together (default 1). "
                                       "Encode: texts per batch (default 32)."),
    prompt_tokens: int = typer.Option(32, "--prompt-tokens", min=1, help="Decode: tokens per prompt."),
    new_tokens: int = typer.Option(32, "--new-tokens", min=2, help="Decode: greedy tokens per prompt."),
    inputs: Optional[Path] = typer.Option(None, "--input", help="Encode: a .txt file, one text per line (default: Rotten Tomatoes snippets)."),
    texts: int = typer.Option(500, "--texts", min=1, help="Encode: how many texts."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs per contender (medians reported)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads (default: torch's)."),
    peers: bool = typer.Option(True, "--peers/--no-peers", help="Also time llama.cpp / ONNX Runtime where installed."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random decode prompts."),
    out: Optional[Path] = typer.Option(None, "--json", help="Also write the measurements to this JSON file."),
) -> None:
    """Measure a model's decode or encode speed here; print a markdown table."""
    import torch

    from polyformer.bench.timing import markdown_table
    from polyformer.errors import ConfigError

    if task not in TASKS:
        raise ConfigError(f"--task {task!r} is not one of {', '.join(TASKS[1:])}")
    if threads is not None:
        torch.set_num_threads(threads)
    from polyformer.bench import run_bench

    record = run_bench.run(run_bench.BenchRequest(
        model=model, task=task, dtypes=None if dtype is None else [d.strip() for d in dtype.split(",") if d.strip()],
        batch=batch, prompt_tokens=prompt_tokens, new_tokens=new_tokens, inputs=inputs, texts=texts,
        repeats=repeats, peers=peers, seed=seed,
    ))
    typer.echo(markdown_table(record["headers"], record["rows"]))
    typer.echo(f"\n{record['summary']}")
    if out is not None:
        out.write_text(json.dumps(record, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
