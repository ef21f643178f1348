"""Named special tokens (pad, bos, eos, unk, cls, sep, mask) as one typed record.

Hugging Face folders spell these in `tokenizer_config.json` / `special_tokens_map.json` as
`"pad_token": "[PAD]"` or as `{"content": "[PAD]", ...}`; GGUF files give ids; trained tokenizers
only have a list of strings. `SpecialTokens` is the one shape all of them are read into, and
`infer_special_tokens` recognises the conventional names when nothing says which is which.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

ROLES: tuple[str, ...] = ("pad", "bos", "eos", "unk", "cls", "sep", "mask")

BERT_SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
GPT2_END_OF_TEXT = "<|endoftext|>"

# Conventional spellings, most specific first; a token may fill more than one role (GPT-2's
# <|endoftext|> is both bos and eos).
_CONVENTIONAL: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>", "<|pad|>", "<|padding|>"),
    "bos": ("<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", GPT2_END_OF_TEXT),
    "eos": ("</s>", "<|end_of_text|>", "<eos>", GPT2_END_OF_TEXT),
    "unk": ("[UNK]", "<unk>", "<|unk|>"),
    "cls": ("[CLS]",),
    "sep": ("[SEP]", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}


@dataclass(frozen=True)
class SpecialTokens:
    """The token string for each special role; None where the tokenizer has none."""

    pad: str | None = None
    bos: str | None = None
    eos: str | None = None
    unk: str | None = None
    cls: str | None = None
    sep: str | None = None
    mask: str | None = None
    extra: tuple[str, ...] = field(default=())

    def named(self) -> dict[str, str]:
        """`{role: token}` for the roles that are set."""
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}

    def all_tokens(self) -> list[str]:
        """Every special token string, each once, roles first."""
        return list(dict.fromkeys([*self.named().values(), *self.extra]))

    def to_config(self) -> dict[str, Any]:
        """Hugging Face `tokenizer_config.json` keys: `pad_token`, ..., `additional_special_tokens`."""
        config: dict[str, Any] = {f"{role}_token": token for role, token in self.named().items()}
        if self.extra:
            config["additional_special_tokens"] = list(self.extra)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SpecialTokens:
        """Read `pad_token` ... `mask_token` (strings or `{"content": ...}` dicts) from a HF config."""
        roles = {role: _token_text(config.get(f"{role}_token")) for role in ROLES}
        extra = tuple(filter(None, (_token_text(t) for t in config.get("additional_special_tokens") or ())))
        return cls(**roles, extra=extra)

    def merged_over(self, fallback: SpecialTokens) -> SpecialTokens:
        """These tokens, with `fallback`'s filling the roles left unset."""
        changes = {f.name: getattr(fallback, f.name) for f in fields(self) if not getattr(self, f.name)}
        return replace(self, **changes)


def infer_special_tokens(vocabulary: Iterable[str]) -> SpecialTokens:
    """Recognise conventional special-token spellings among `vocabulary`."""
    present = set(vocabulary)
    roles = {role: next((t for t in names if t in present), None) for role, names in _CONVENTIONAL.items()}
    return SpecialTokens(**roles)


def _token_text(value: Any) -> str | None:
    """A special token as HF stores it: a plain string, or an AddedToken dict with `content`."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"] or None
    return None
