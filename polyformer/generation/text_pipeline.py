"""`TextGenerationPipeline`: text in, text out (whole or streamed), for a model and its tokenizer.

    pipe = TextGenerationPipeline.load("SmolLM2-135M-Instruct", dtype="int8")
    pipe("The capital of France is", max_new_tokens=20)             # -> str (the completion)
    pipe(["Once upon a time", "In a galaxy"], temperature=0.7, seed=0)   # -> list[str]
    for piece in pipe.stream("Once upon a time"):                   # text increments
        print(piece, end="", flush=True)
    pipe.chat([{"role": "user", "content": "What is the capital of France?"}])   # chat template applied
    best = pipe.complete(["The capital of France is"], num_beams=4, num_return_sequences=3)[0]
    best.text, [(c.text, c.score) for c in best.candidates]         # the best beam; the 3-best list

Keyword arguments are `GenerationConfig` fields (max_new_tokens, temperature, top_k, top_p,
min_p, repetition_penalty, stop, seed, num_beams, num_return_sequences, ...) or transformers'
`do_sample`, over the pipeline's defaults. Calls return each prompt's best (or first) text;
`complete` returns all its candidates. Completions are cut exactly at the first stop string and
never include the prompt or special tokens.
`pf.pipeline("text-generation", model)` builds one of these.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polyformer.errors import DataError
from polyformer.generation.settings import GenerationConfig, make_config
from polyformer.generation.text import TextCompletion, generate_text, stream_text

if TYPE_CHECKING:
    from polyformer.models import PolyformerModel

Messages = Sequence[Mapping[str, Any]]


class TextGenerationPipeline:
    """A decoder (or encoder–decoder) and its tokenizer, with default generation settings."""

    task = "text-generation"

    def __init__(self, model: PolyformerModel, tokenizer, config: GenerationConfig | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or GenerationConfig()

    @classmethod
    def load(cls, model: str | Path, device: str = "auto", dtype: str | torch.dtype | None = None,
             **defaults: Any) -> TextGenerationPipeline:
        """Load a model and its tokenizer from a catalog name, folder or GGUF file.

        dtype: "float32", "bfloat16" or "int8" (see `polyformer.precision`); None (the default) keeps
        what the checkpoint stores, i.e. a GGUF file's 4-bit / 8-bit blocks on CPU.
        `defaults` are GenerationConfig fields used by every call.
        """
        from polyformer.io.loader import load
        from polyformer.locations import resolve
        from polyformer.precision import prepare
        from polyformer.runtime import resolve_device
        from polyformer.tokenizers import load_tokenizer

        path = resolve(model)
        target = resolve_device(device)
        stored = dtype is None and target.type == "cpu"  # quantized GGUF kernels are CPU kernels
        loaded = load(path) if stored else prepare(load(path, dtype="float32"), target, dtype)
        return cls(loaded, load_tokenizer(path), make_config(**defaults))

    # ---- plain text ----------------------------------------------------------------------
    def __call__(self, prompts: str | Sequence[str], **options: Any) -> str | list[str]:
        """The completion of a prompt (str), or of each prompt of a list (list[str]); the best candidate's text."""
        texts = [c.text for c in self.complete(_as_list(prompts), **options)]
        return texts[0] if isinstance(prompts, str) else texts

    def complete(self, prompts: Sequence[str], *, add_special_tokens: bool = True, **options: Any) -> list[TextCompletion]:
        """One `TextCompletion` per prompt, decoded as a batch.

        Its `candidates` are num_return_sequences `Candidate`s, best first (text, token ids, finish
        reason "stop" or "length", beam score); the best one's fields read directly (`.text`, ...).
        """
        return generate_text(self.model, self.tokenizer, _as_list(prompts), self.request(**options), add_special_tokens)

    def stream(self, prompt: str, *, add_special_tokens: bool = True, **options: Any) -> Iterator[str]:
        """Text increments of one prompt's completion as they are decoded (never half a character)."""
        pieces = stream_text(self.model, self.tokenizer, [_one_prompt(prompt)], self.request(**options), add_special_tokens)
        return (piece for _, piece in pieces)

    def stream_batch(self, prompts: Sequence[str], **options: Any) -> Iterator[tuple[int, str]]:
        """(prompt index, text increment) pairs for a batch of prompts decoded together."""
        return stream_text(self.model, self.tokenizer, _as_list(prompts), self.request(**options))

    # ---- chat ----------------------------------------------------------------------------
    def chat_prompt(self, messages: Messages) -> str:
        """The prompt the model's chat template makes of `messages`, ending where the reply starts."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def chat(self, messages: Messages, **options: Any) -> str:
        """The assistant's reply to a conversation."""
        return self.complete([self.chat_prompt(messages)], add_special_tokens=False, **options)[0].text

    def chat_stream(self, messages: Messages, **options: Any) -> Iterator[str]:
        """The assistant's reply, streamed."""
        return self.stream(self.chat_prompt(messages), add_special_tokens=False, **options)

    # ---- settings ------------------------------------------------------------------------
    def request(self, **options: Any) -> GenerationConfig:
        """The pipeline defaults with `options` applied; EOS defaults to the model's and the tokenizer's."""
        config = make_config(self.config, **options)
        if config.stopping.eos_token_id is None:
            ends = self.model.config.end_ids(getattr(self.tokenizer, "eos_token_id", None))
            config = make_config(config, eos_token_id=ends or None)
        return config

    def context_length(self) -> int:
        return self.model.config.max_positions


def _as_list(prompts: str | Sequence[str]) -> list[str]:
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    if not items:
        raise DataError("no prompts given; pass a string or a non-empty list of strings")
    for index, item in enumerate(items):
        _one_prompt(item, f"prompts[{index}]")
    return items


def _one_prompt(prompt: object, where: str = "prompt") -> str:
    if not isinstance(prompt, str):
        raise DataError(f"{where} must be a string, got {type(prompt).__name__}")
    if not prompt:
        raise DataError(f"{where} is empty; give at least one character of text")
    return prompt
