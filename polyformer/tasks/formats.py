"""How a (source, target) pair becomes token ids for each form of the Transformer, with counted truncation.

Three layouts (`PairLayout.kind`):

- `encoder-decoder`: the encoder reads the source (with the tokenizer's own special tokens, as
  Marian's `</s>`); the decoder is taught the target followed by EOS, starting from
  `decoder_start_token_id`.
- `separator` (GPT-style translation): one sequence `[BOS] source SEP target EOS` — SEP is the
  tokenizer's separator token, or a newline when it has none; the loss is taken on the target
  and EOS only, and generation starts after SEP.
- `chat` (instruct models): the user turn is `instruction` with the source in it, rendered with the
  tokenizer's chat template up to where the assistant's reply starts; the target is the reply as
  the template writes it, up to and including its end-of-turn token.

Sequences longer than `max_length` lose tokens at the end of the source (the target is kept whole
when it fits with at least one source token); `truncated` in each result says which were cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from polyformer.errors import ConfigError
from polyformer.tasks.encoding import TaskTokenizer
from polyformer.training.objectives import IGNORE_INDEX

if TYPE_CHECKING:
    from polyformer.config import ModelConfig
    from polyformer.tokenizers import Tokenizer

PairFormat = Literal["encoder-decoder", "separator", "chat"]
KINDS: tuple[PairFormat, ...] = get_args(PairFormat)
DEFAULT_INSTRUCTION = "Translate the following {source}text into {target}. Reply with the translation only.\n\n{text}"


@dataclass(frozen=True)
class Encoded:
    """One pair (or one source) as ids: `prompt` is what the model reads before generating."""

    prompt: list[int]
    target: list[int]  # empty for a source alone
    truncated: bool


def layout_kind(config: ModelConfig, tokenizer: Tokenizer, requested: str | None = None) -> PairFormat:
    """The layout for a model: its fine-tuning setting, else encoder-decoder / chat (with a template) / separator."""
    if config.arch == "encoder":
        raise ConfigError("text-to-text tasks need a model that generates (a decoder or an encoder-decoder); "
                          "this one is an encoder")
    if config.arch == "encoder-decoder":
        return "encoder-decoder"
    kind = requested or config.extra.get("pair_format") or ("chat" if tokenizer.chat_template else "separator")
    if kind not in KINDS[1:]:
        raise ConfigError(f"pair_format={kind!r} is not one of separator, chat (decoders)")
    if kind == "chat" and not tokenizer.chat_template:
        raise ConfigError("pair_format='chat' needs a tokenizer with a chat template; use 'separator'")
    return kind


def _checked_instruction(instruction: str) -> str:
    """A chat request template: it must hold {text} and name no other field than {source} and {target}."""
    try:
        instruction.format(text="", source="", target="")
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"instruction {instruction!r} does not format ({err!r}); it may use {{text}}, {{source}} and "
                          "{target}, and other braces doubled ({{ }})") from None
    if "{text}" not in instruction:
        raise ConfigError(f"instruction {instruction!r} has no {{text}}: the source would not be in the request")
    return instruction


class PairLayout:
    """Encode sources (for generation) and pairs (for training) in one layout."""

    def __init__(self, tokenizer: Tokenizer, config: ModelConfig, kind: PairFormat, max_length: int,
                 instruction: str = DEFAULT_INSTRUCTION, languages: tuple[str | None, str | None] = (None, None)) -> None:
        self.tokenizer, self.kind, self.max_length = tokenizer, kind, max_length
        self.instruction = _checked_instruction(instruction) if kind == "chat" else instruction
        self.languages = languages
        self.clipper = TaskTokenizer(tokenizer, max(4, max_length))
        ends = [tokenizer.eos_token_id, config.eos_token_id]
        self.eos_ids = list(dict.fromkeys(i for i in ends if i is not None and 0 <= i < config.vocab_size))
        if not self.eos_ids:
            raise ConfigError("text-to-text tasks need an end-of-sequence token; the tokenizer and model have none")
        self.eos = self.eos_ids[0]
        self.bos = [tokenizer.bos_token_id] if kind == "separator" and tokenizer.bos_token_id is not None else []
        sep = tokenizer.sep_token_id
        self.separator = [sep] if sep is not None else tokenizer.encode("\n", add_special_tokens=False)

    # ---- ids --------------------------------------------------------------------------------
    def _ids(self, texts: Sequence[str], special: bool) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), padding=False, truncation=False, add_special_tokens=special,
                              return_tensors=None)["input_ids"]

    def user_message(self, source: str) -> str:
        """The chat layout's user turn for a source."""
        first, second = self.languages
        return self.instruction.format(text=source, source=f"{first} " if first else "", target=second or "the target language")

    def _chat_prompts(self, sources: Sequence[str]) -> list[str]:
        return [self.tokenizer.apply_chat_template([{"role": "user", "content": self.user_message(s)}],
                                                   add_generation_prompt=True) for s in sources]

    def _frame(self, source_ids: list[int], prompt_ids: list[int] | None) -> list[int]:
        """The full prompt of a source (the chat prompt was tokenised already)."""
        if self.kind == "encoder-decoder":
            return source_ids
        if self.kind == "separator":
            return [*self.bos, *source_ids, *self.separator]
        return prompt_ids or []

    def sources(self, texts: Sequence[str], room: int = 1) -> list[Encoded]:
        """Prompts for generation, leaving `room` positions of the context to generate into (decoders)."""
        return self._encode(texts, [[] for _ in texts], room)

    def pairs(self, sources: Sequence[str], targets: Sequence[str]) -> list[Encoded]:
        """Prompts and targets for training (targets end with EOS)."""
        return self._encode(sources, self._targets(sources, targets), 0)

    def _targets(self, sources: Sequence[str], targets: Sequence[str]) -> list[list[int]]:
        if self.kind != "chat":
            return [[*ids, self.eos] for ids in self._ids(targets, False)]
        prompts = self._chat_prompts(sources)
        out = []
        for source, target, prompt in zip(sources, targets, prompts):
            messages = [{"role": "user", "content": self.user_message(source)}, {"role": "assistant", "content": target}]
            full = self.tokenizer.apply_chat_template(messages)
            reply = full[len(prompt):] if full.startswith(prompt) else target
            ids = self.tokenizer.encode(reply, add_special_tokens=False)
            end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
            out.append(ids[: end + 1] if end is not None else [*ids, self.eos])
        return out

    def _encode(self, sources: Sequence[str], targets: list[list[int]], room: int) -> list[Encoded]:
        source_ids = self._ids(sources, self.kind == "encoder-decoder")
        chat = self._ids(self._chat_prompts(sources), False) if self.kind == "chat" else [None] * len(sources)
        return [self._fit(text, ids, self._frame(ids, prompt), target, room)
                for text, ids, prompt, target in zip(sources, source_ids, chat, targets)]

    def _fit(self, text: str, ids: list[int], prompt: list[int], target: list[int], room: int) -> Encoded:
        """Cut the target (only when not one source token would fit beside it), then the source, to the context."""
        if self.kind == "encoder-decoder":  # source and target each have the whole context
            cut = len(target) > self.max_length
            target = [*target[: self.max_length - 1], self.eos] if cut else target
            if len(prompt) <= self.max_length:
                return Encoded(prompt, target, cut)
            return Encoded(self._clipped(text, self.max_length, 0), target, True)
        limit = self.max_length - room
        frame = len(prompt) - len(ids)  # BOS + SEP, or the chat template's tokens
        cut = frame + 1 + len(target) > limit
        if cut:
            keep = max(1, limit - frame - 1)
            target = [*target[: keep - 1], target[-1]]
        if len(prompt) + len(target) <= limit:
            return Encoded(prompt, target, cut)
        return Encoded(self._clipped(text, limit, len(target)), target, True)

    def _clipped(self, text: str, limit: int, target_length: int) -> list[int]:
        """The prompt of `text` cut at the end so that prompt + target fit `limit` tokens."""
        keep = len(self._ids([text], False)[0])
        for _ in range(4):  # re-tokenising a cut text can merge tokens differently at the edge: check, cut more
            clipped, _ = self.clipper.clip(text, max(1, keep))
            ids = self._ids([clipped], self.kind == "encoder-decoder")[0]
            chat = self._ids(self._chat_prompts([clipped]), False)[0] if self.kind == "chat" else None
            prompt = self._frame(ids, chat)
            over = len(prompt) + target_length - limit
            if over <= 0 or keep <= 1:
                return prompt
            keep -= over
        return prompt

    # ---- training features ----------------------------------------------------------------------
    def feature(self, encoded: Encoded) -> dict[str, list[int]]:
        """The training row of a pair: encoder input and target, or one causal sequence with masked prompt labels."""
        if self.kind == "encoder-decoder":
            return {"input_ids": encoded.prompt, "target": encoded.target}
        sequence = [*encoded.prompt, *encoded.target]
        return {"input_ids": sequence[:-1], "labels": [IGNORE_INDEX] * (len(encoded.prompt) - 1) + encoded.target}

    def decode(self, ids: Sequence[int]) -> str:
        """Generated ids as text (special tokens and the end of turn left out)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
