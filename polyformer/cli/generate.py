"""`polyformer generate`: complete one prompt (plain or streamed) or a file of prompts (JSON lines).

    polyformer generate --model SmolLM2-135M-Instruct --prompt "The capital of France is"
    polyformer generate --model SmolLM2-135M-Instruct --chat --stream --prompt "Tell me about Paris."
    polyformer generate --model M --file prompts.jsonl --temperature 0.8 --top-p 0.95 --seed 0 > out.jsonl
    polyformer generate --model M --prompt "The capital of France is" --num-beams 4 --num-return-sequences 3

Generation options are checked before the model is loaded, so a bad value fails at once. The
options shared with `polyformer chat` are one option group, `GenerationOptions`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from polyformer.cli.options import grouped, option
from polyformer.errors import ConfigError, DataError

if TYPE_CHECKING:
    from polyformer.generation.text import Candidate, TextCompletion

MODEL = typer.Option(..., "--model", help="Catalog name (SmolLM2-135M-Instruct), model folder, run directory, .gguf file or hub id (org/name).")
DTYPE = typer.Option(None, "--dtype", help="Weights: float32 | bfloat16 | int8 (default: as stored; a GGUF file keeps "
                     "its 4-bit / 8-bit blocks on CPU).")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N.")


@dataclass
class GenerationOptions:
    """The generation options `generate` and `chat` share (GenerationConfig fields)."""

    max_new_tokens: int = option(128, "--max-new-tokens", help="Most tokens to generate per prompt.")
    temperature: float = option(0.0, "--temperature", help="Sampling temperature; 0 = greedy.")
    top_k: int = option(0, "--top-k", help="Sample among the k most likely tokens (0 = off).")
    top_p: float = option(1.0, "--top-p", help="Nucleus sampling: the smallest set with this probability, in (0, 1].")
    min_p: float = option(0.0, "--min-p", help="Drop tokens less likely than min_p times the top token (0 = off).")
    repetition_penalty: float = option(1.0, "--repetition-penalty", help="Penalise tokens already seen (1 = off).")
    stop: Optional[list[str]] = option(None, "--stop", help="Stop at this string (repeatable); the text ends just before it.")
    seed: Optional[int] = option(None, "--seed", help="Seed for sampling (same seed, same text).")
    compile: Optional[bool] = option(None, "--compile/--no-compile",
                                     help="torch.compile the decode step (default: on CUDA only).")

    def request(self, **extra: Any) -> dict[str, Any]:
        """The GenerationConfig fields given (these and `extra`), checked now, before any model is loaded."""
        from polyformer.generation.settings import make_config

        given = {**{f.name: getattr(self, f.name) for f in fields(self)}, **extra}
        options = {name: value for name, value in given.items() if value is not None}
        if "stop" in options:
            options["stop"] = list(options["stop"])
        if "eos_token_id" in options:
            options["eos_token_id"] = list(options["eos_token_id"]) or None
        make_config(**options)
        return options


def read_prompts(path: Path, text_column: str = "text") -> list[tuple[Any, str]]:
    """(id, prompt) pairs: a .txt line per prompt, or `text_column` of .jsonl objects / .csv rows (`id` optional)."""
    from polyformer.data.corpus import _open_text, _records

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl", ".csv"):
        raise DataError(f"{path}: unsupported prompt file; expected .txt (one prompt per line), .jsonl or .csv")
    if suffix == ".txt":
        with _open_text(path) as handle:
            lines = [(number, line.rstrip("\n")) for number, line in enumerate(handle, 1)]
        items = [(number - 1, text, f"{path}:{number}") for number, text in lines if text.strip()]
    else:
        items = [(record.get("id", index), record.get(text_column), where)
                 for index, (where, record) in enumerate(_records(path))]
    for _, text, where in items:
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: no prompt text in field {text_column!r} (give a non-empty string)")
    if not items:
        raise DataError(f"{path}: no prompts in the file")
    return [(key, text) for key, text, _ in items]


def generate(
    model: str = MODEL,
    prompt: Optional[str] = typer.Option(None, "--prompt", help="The prompt text."),
    file: Optional[Path] = typer.Option(None, "--file", help="Prompts: .txt (one per line), .jsonl or .csv (field text, optional id)."),
    text_column: str = typer.Option("text", "--text-column", help="Prompt field of .jsonl / .csv files."),
    chat: bool = typer.Option(False, "--chat", help="Wrap each prompt as a user turn of the model's chat template."),
    system: Optional[str] = typer.Option(None, "--system", help="With --chat: a system message first."),
    generation: GenerationOptions = GenerationOptions(),
    stop_token_id: Optional[list[int]] = typer.Option(None, "--stop-token-id",
                                                      help="Stop at this token id (repeatable; default: the model's EOS)."),
    num_beams: int = typer.Option(1, "--num-beams", help="Beam search with this many beams (1 = off)."),
    num_return_sequences: int = typer.Option(1, "--num-return-sequences",
                                             help="Candidates per prompt: the n best beams, or n samples (needs --temperature > 0)."),
    stream: bool = typer.Option(False, "--stream", help="Print the text as it is generated (--prompt, one sequence only)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts decoded together with --file."),
    dtype: Optional[str] = DTYPE,
    device: str = DEVICE,
) -> None:
    """Generate text from a prompt or a file of prompts (JSON lines out for files)."""
    if (prompt is None) == (file is None):
        raise ConfigError("give exactly one of --prompt TEXT or --file FILE")
    if stream and file is not None:
        raise ConfigError("--stream prints one prompt's text as it is generated; use it with --prompt")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if prompt is not None and not prompt.strip():
        raise DataError("--prompt is empty; give some text to continue")
    options = generation.request(eos_token_id=stop_token_id, num_beams=num_beams, num_return_sequences=num_return_sequences)
    if stream and (num_beams > 1 or num_return_sequences > 1):
        raise ConfigError("--stream prints one sequence as it is generated: use --num-beams 1 and --num-return-sequences 1")
    items = read_prompts(file, text_column) if file is not None else [(0, prompt)]
    from polyformer.generation.text_pipeline import TextGenerationPipeline

    pipe = TextGenerationPipeline.load(model, device=device, dtype=dtype)
    prompts = [render(pipe, text, system) if chat else text for _, text in items]
    specials = not chat  # a rendered chat template already holds its special tokens
    if stream:
        for piece in pipe.stream(prompts[0], add_special_tokens=specials, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        completions = pipe.complete(batch, add_special_tokens=specials, **options)
        for offset, completion in enumerate(completions):
            if file is None:
                typer.echo(printed(completion))
                continue
            key, text = items[start + offset]
            typer.echo(json.dumps({"id": key, "prompt": text, **record(completion)}, ensure_ascii=False))


def candidate_record(candidate: Candidate) -> dict[str, Any]:
    """A candidate's JSON fields: text, finish_reason, new_tokens, and score under beam search."""
    fields = {"text": candidate.text, "finish_reason": candidate.finish_reason, "new_tokens": len(candidate.token_ids)}
    return fields if candidate.score is None else {**fields, "score": candidate.score}


def record(completion: TextCompletion) -> dict[str, Any]:
    """A prompt's JSON fields: the best candidate's, plus every candidate (best first) when there are several."""
    fields = candidate_record(completion.candidates[0])
    if len(completion.candidates) > 1:
        fields["candidates"] = [candidate_record(c) for c in completion.candidates]
    return fields


def printed(completion: TextCompletion) -> str:
    """The text; several candidates as `[i] text` (`[i] (score) text` under beam search), best first."""
    if len(completion.candidates) == 1:
        return completion.text
    lines = []
    for index, candidate in enumerate(completion.candidates, 1):
        score = "" if candidate.score is None else f" ({candidate.score:.4f})"
        lines.append(f"[{index}]{score} {candidate.text}")
    return "\n".join(lines)


def render(pipe, text: str, system: str | None) -> str:
    """A prompt as the model's chat template shows a user turn (after an optional system turn)."""
    if not getattr(pipe.tokenizer, "chat_template", None):
        raise ConfigError("--chat needs a model whose tokenizer has a chat template (this one has none)")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return pipe.chat_prompt(messages)


def register(app: typer.Typer) -> None:
    app.command("generate")(grouped(generate))
