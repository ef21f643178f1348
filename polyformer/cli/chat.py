"""`polyformer chat --model M`: an interactive conversation, streamed, with history.

Each line read is a user turn; the model's chat template (for SmolLM2, the one inside its GGUF)
renders the whole conversation and the reply streams to stdout. `/reset` forgets the history,
`/exit` (or end of input) quits. Ctrl-C during a reply stops that reply and drops the turn;
Ctrl-C at the prompt quits. When the conversation outgrows the model's context, the oldest
turns are dropped (a note goes to stderr). Lines come from stdin, so a script can drive it:

    printf 'Hi!\\nWhat is the capital of France?\\n/exit\\n' | polyformer chat --model SmolLM2-135M-Instruct
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any, Optional, TextIO

import typer

from polyformer.cli.generate import DEVICE, DTYPE, MODEL, GenerationOptions
from polyformer.cli.options import grouped
from polyformer.errors import ConfigError, PolyformerError

COMMANDS = "/reset (forget the conversation), /exit (quit)"
Message = dict[str, str]


class Conversation:
    """The messages so far, trimmed from the oldest turn when a prompt would not fit the context."""

    def __init__(self, pipe, system: str | None, max_new_tokens: int) -> None:
        self.pipe, self.max_new_tokens = pipe, max_new_tokens
        self.start: list[Message] = [{"role": "system", "content": system}] if system else []
        self.messages: list[Message] = list(self.start)

    def reset(self) -> None:
        self.messages = list(self.start)

    def with_user(self, text: str) -> tuple[list[Message], int]:
        """The messages to send for a new user turn, and how many old turns were dropped to fit."""
        messages = [*self.messages, {"role": "user", "content": text}]
        dropped = 0
        while self._too_long(messages) and len(messages) > len(self.start) + 1:
            messages = self.start + messages[len(self.start) + 2 :]  # one user + assistant exchange
            dropped += 1
        if self._too_long(messages):
            raise ConfigError("this message alone does not fit the model's context with --max-new-tokens; "
                              "shorten it or lower --max-new-tokens")
        return messages, dropped

    def _too_long(self, messages: list[Message]) -> bool:
        prompt = self.pipe.chat_prompt(messages)
        length = len(self.pipe.tokenizer.encode(prompt, add_special_tokens=False))
        return length + self.max_new_tokens > self.pipe.context_length()


def chat_loop(pipe, lines: Iterator[str], out: TextIO, err: TextIO, options: dict[str, Any],
              system: str | None = None, prompt: Callable[[], None] = lambda: None) -> int:
    """Run the conversation over `lines`; returns the number of replies given."""
    conversation = Conversation(pipe, system, options.get("max_new_tokens", 128))
    replies = 0
    while True:
        prompt()
        try:
            line = next(lines, None)
        except KeyboardInterrupt:
            err.write("\n")
            return replies
        if line is None:
            return replies
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return replies
        if text == "/reset":
            conversation.reset()
            err.write("(conversation reset)\n")
            continue
        if text.startswith("/"):
            err.write(f"unknown command {text}; commands: {COMMANDS}\n")
            continue
        replies += _reply(pipe, conversation, text, out, err, options)


def _reply(pipe, conversation: Conversation, text: str, out: TextIO, err: TextIO, options: dict[str, Any]) -> int:
    """Stream one reply and add the turn to the history; 0 when it failed or was interrupted."""
    try:
        messages, dropped = conversation.with_user(text)
        if dropped:
            err.write(f"(dropped the {dropped} oldest exchange(s) to fit the context)\n")
        pieces = []
        for piece in pipe.chat_stream(messages, **options):
            pieces.append(piece)
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        out.write("\n")
        err.write("(reply interrupted; the turn is forgotten)\n")
        return 0
    except PolyformerError as error:
        err.write(f"error: {' '.join(str(error).split())}\n")
        return 0
    out.write("\n")
    out.flush()
    conversation.messages = [*messages, {"role": "assistant", "content": "".join(pieces).strip()}]
    return 1


def chat(
    model: str = MODEL,
    system: Optional[str] = typer.Option(None, "--system", help="A system message that starts the conversation."),
    generation: GenerationOptions = GenerationOptions(),
    dtype: Optional[str] = DTYPE,
    device: str = DEVICE,
) -> None:
    """Chat with a model interactively: streamed replies, history, /reset and /exit."""
    options = generation.request()
    from polyformer.generation.text_pipeline import TextGenerationPipeline

    pipe = TextGenerationPipeline.load(model, device=device, dtype=dtype)
    if not getattr(pipe.tokenizer, "chat_template", None):
        raise ConfigError(f"{model}: its tokenizer has no chat template; use `polyformer generate` for plain prompts")
    interactive = sys.stdin.isatty()
    if interactive:
        sys.stderr.write(f"chatting with {model}; {COMMANDS}\n")

    def show_prompt() -> None:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()

    chat_loop(pipe, iter(sys.stdin.readline, ""), sys.stdout, sys.stderr, options, system, show_prompt)


def register(app: typer.Typer) -> None:
    app.command("chat")(grouped(chat))
