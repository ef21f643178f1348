"""Rendering chat templates: a list of messages to the prompt string a chat model was tuned on.

Chat models ship a Jinja template (in `tokenizer_config.json` or a GGUF's `tokenizer.chat_template`)
that turns `[{"role": ..., "content": ...}, ...]` into text with the model's turn markers. It is
rendered in a sandbox, with the same variables transformers passes (`messages`, `bos_token`,
`eos_token`, `add_generation_prompt`, `raise_exception`), so templates written for HF work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from polyformer.errors import TokenizerError


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = False,
    bos_token: str | None = None,
    eos_token: str | None = None,
) -> str:
    """The prompt `template` makes of `messages`; TokenizerError for malformed messages or templates."""
    _check_messages(messages)
    try:
        compiled = _compile(template)
        return compiled.render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token or "",
            eos_token=eos_token or "",
        )
    except TokenizerError:
        raise
    except Exception as error:  # jinja2 raises many types; all mean "this template cannot render"
        raise TokenizerError(f"chat template failed to render: {error}") from error


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TokenizerError("messages must be a list of {'role': ..., 'content': ...} dicts")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TokenizerError(f"messages[{index}] must be a dict with a string 'role'")
        if not isinstance(message.get("content", ""), str):
            raise TokenizerError(f"messages[{index}]['content'] must be a string")


def _raise(message: str) -> None:
    raise TokenizerError(f"chat template rejected the messages: {message}")


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = _raise
    return environment.from_string(template)
