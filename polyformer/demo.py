"""`make demo`: a short tour on embedded defaults, all from catalog weights.

1. all-MiniLM-L6-v2 (a BERT encoder + mean pooling) embeds a few sentences: cosine-similarity table.
2. SmolLM2-135M-Instruct (a Llama decoder read from its 4-bit GGUF) answers a question greedily.
"""

from __future__ import annotations

import time

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
    import torch

    import polyformer as pf
    from polyformer.generation import greedy_tokens

    model = pf.load("SmolLM2-135M-Instruct")
    tokenizer = pf.load_tokenizer("SmolLM2-135M-Instruct")
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    console.print(f"[bold]SmolLM2-135M-Instruct[/bold] ({model.num_parameters() / 1e6:.0f}M parameters, greedy)")
    console.print(f"[dim]user:[/dim] {QUESTION}")
    start = time.perf_counter()
    tokens = list(greedy_tokens(model, ids, max_new_tokens, eos_token_id=tokenizer.eos_token_id))
    elapsed = time.perf_counter() - start
    console.print(f"[dim]assistant:[/dim] {tokenizer.decode(tokens, skip_special_tokens=True).strip()}")
    console.print(f"[dim]{len(tokens)} tokens in {elapsed:.1f} s[/dim]")


def main() -> None:
    console = Console()
    console.rule("polyformer demo")
    similarity_table(console)
    chat_completion(console)


if __name__ == "__main__":
    main()
