"""`make demo`: a short tour on embedded defaults, from catalog weights and catalog text.

1. all-MiniLM-L6-v2 (a BERT encoder + mean pooling) embeds a few sentences: cosine-similarity table.
2. SmolLM2-135M-Instruct (a Llama decoder read from its 4-bit GGUF) answers a question greedily,
   streamed through the generation engine with its own chat template.
3. The same core pretrained from scratch on Shakespeare, two ways: a tiny BERT (masked LM +
   next-sentence prediction) fills a [MASK], a tiny character-level GPT continues a line.

Every part repeats on a CPU: greedy decoding, and pretraining through `training.pretrain.run`,
which seeds every generator (seed 0) before it builds the models.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SENTENCES = [
    "A gripping thriller with a clever twist.",
    "The suspense keeps you guessing until the end.",
    "A dull, lifeless romantic comedy.",
    "The stock market fell sharply today.",
]
QUESTION = "What is the capital of France? Answer in one sentence."


def similarity_table(console: Console) -> None:
    import polyformer as pf

    encoder = pf.SentenceEncoder.load("all-MiniLM-L6-v2")
    vectors = encoder.encode(SENTENCES, normalize=True)
    scores = vectors @ vectors.T  # unit vectors: dot product = cosine
    table = Table(title="all-MiniLM-L6-v2: cosine similarity")
    table.add_column("sentence")
    for index in range(len(SENTENCES)):
        table.add_column(f"#{index + 1}", justify="right")
    for index, sentence in enumerate(SENTENCES):
        table.add_row(f"#{index + 1} {sentence}", *(f"{value:.2f}" for value in scores[index]))
    console.print(table)


def chat_completion(console: Console, max_new_tokens: int = 40) -> None:
    """SmolLM2 answers a question through its chat template, the reply streamed as it is decoded."""
    from polyformer.generation.pipeline import TextGenerationPipeline

    pipe = TextGenerationPipeline.load("SmolLM2-135M-Instruct", device="cpu")
    console.print(f"[bold]SmolLM2-135M-Instruct[/bold] ({pipe.model.num_parameters() / 1e6:.0f}M parameters, greedy, streamed)")
    console.print(f"[dim]user:[/dim] {QUESTION}")
    console.print("[dim]assistant:[/dim] ", end="")
    start, pieces = time.perf_counter(), []
    for piece in pipe.chat_stream([{"role": "user", "content": QUESTION}], max_new_tokens=max_new_tokens):
        piece = piece if any(pieces) else piece.lstrip()
        pieces.append(piece)
        console.file.write(piece)
        console.file.flush()
    elapsed = time.perf_counter() - start
    console.print()
    console.print(f"[dim]answered in {elapsed:.1f} s[/dim]")


def pretrain_two_ways(console: Console, runs: Path = Path("runs/demo")) -> None:
    """Pretrain a tiny BERT and a tiny GPT on Shakespeare (about a minute each on 2 CPU cores)."""
    import shutil

    import torch

    import polyformer as pf
    from polyformer.generation import greedy_tokens
    from polyformer.tasks import fill_mask
    from polyformer.training.pretrain import PretrainSpec, run

    shutil.rmtree(runs, ignore_errors=True)
    quiet = {"progress": False, "eval_batches": 10, "lr": 2e-3, "warmup_steps": 20, "min_lr": 2e-4, "seed": 0}
    console.rule("pretraining from scratch on Shakespeare")
    bert_spec = PretrainSpec(arch="encoder", preset="bert-tiny", tokenizer="wordpiece", vocab_size=3000,
                             block_size=64, batch_size=16, train={**quiet, "max_steps": 300})
    gpt_spec = PretrainSpec(arch="decoder", preset="gpt-tiny", tokenizer="char", block_size=64, batch_size=12,
                            train={**quiet, "max_steps": 400})
    for label, spec in (("BERT (MLM + NSP)", bert_spec), ("GPT (causal LM, characters)", gpt_spec)):
        start = time.perf_counter()
        metrics = run(spec, runs / spec.arch)[-1]
        shown = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith("eval_"))
        console.print(f"[bold]{label}[/bold]: {spec.train['max_steps']} steps in {time.perf_counter() - start:.0f} s; {shown}")
    bert, bert_tok = pf.load(runs / "encoder" / "model"), pf.load_tokenizer(runs / "encoder" / "model")
    for text in ("to be or not to be , that is the [MASK] .", "my lord , the [MASK] is dead ."):
        guesses = ", ".join(f"{p.token} ({p.score:.2f})" for p in fill_mask(bert, bert_tok, text, top_k=3)[0])
        console.print(f"[dim]BERT fills[/dim] {text!r}: {guesses}")
    gpt, gpt_tok = pf.load(runs / "decoder" / "model"), pf.load_tokenizer(runs / "decoder" / "model")
    prompt = "ROMEO:\nBut soft, what light"
    tokens = greedy_tokens(gpt, torch.tensor([gpt_tok.encode(prompt)]), 160, temperature=0.8, seed=0)
    console.print(f"[dim]GPT continues[/dim]\n{prompt}[bold]{gpt_tok.decode(list(tokens))}[/bold]")


def main() -> None:
    console = Console()
    console.rule("polyformer demo")
    similarity_table(console)
    chat_completion(console)
    pretrain_two_ways(console)


if __name__ == "__main__":
    main()
