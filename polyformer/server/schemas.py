"""Request bodies of every endpoint, as pydantic models in the shapes OpenAI's clients send.

Validation is strict (no "5" for 5, no 5.0 for an integer, no NaN), unknown fields are refused by
name, and every number has its range, so a bad request is a 400 that names the field before any
model work starts. The fields that take several shapes (`prompt`, `input`, `stop`, message
`content`) are checked by hand for a clear message. Limits that depend on the model (vocabulary,
context) are checked where the model is known (`polyformer.server.generation_api`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_N = 16  # choices per prompt
MAX_PROMPTS = 64  # prompts per completion request
MAX_ROWS = 64  # sequences per request: prompts x n
MAX_STOP = 16  # stop strings per request, each at most MAX_STOP_CHARS
MAX_STOP_CHARS = 256
MAX_MESSAGES = 512
MAX_INPUTS = 2048  # texts per embedding / classification request
MAX_DOCUMENTS = 1000  # documents per rerank request
MAX_LOGIT_BIAS = 300
MAX_TOP_LOGPROBS = 20
MAX_SEED = 2**63 - 1
ROLES = ("system", "developer", "user", "assistant", "tool")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _texts(value: Any, what: str, max_items: int, allow_ids: bool) -> Any:
    """A non-empty string, a list of them, or (allow_ids) token ids / lists of token ids."""
    shapes = "a string or a list of strings" + (", token ids or lists of token ids" if allow_ids else "")
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{what} is empty; give at least one character")
        return value
    if not isinstance(value, list) or not value:
        raise ValueError(f"{what} must be {shapes} (non-empty)")
    if len(value) > max_items:
        raise ValueError(f"{what} holds {len(value)} items; at most {max_items} per request")
    if all(isinstance(v, str) for v in value):
        empty = next((i for i, v in enumerate(value) if not v), None)
        if empty is not None:
            raise ValueError(f"{what}[{empty}] is empty; give at least one character")
        return value
    if allow_ids and all(_is_id(v) for v in value):
        return value
    if allow_ids and all(isinstance(v, list) for v in value):
        for index, row in enumerate(value):
            if not row or not all(_is_id(v) for v in row):
                raise ValueError(f"{what}[{index}] must be a non-empty list of token ids (integers >= 0)")
        return value
    raise ValueError(f"{what} must be {shapes}, not a mix")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        raise ValueError("stop must be a non-empty string or a list of them")
    if len(items) > MAX_STOP:
        raise ValueError(f"stop holds {len(items)} strings; at most {MAX_STOP}")
    if any(len(s) > MAX_STOP_CHARS for s in items):
        raise ValueError(f"a stop string is longer than {MAX_STOP_CHARS} characters")
    return items


class StreamOptions(Strict):
    include_usage: bool = False


class Sampling(Strict):
    """The sampling fields shared by completions and chat."""

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, le=100_000)  # -1 or 0 = off
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: Any = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0)
    logit_bias: dict[str, float] | None = Field(None, max_length=MAX_LOGIT_BIAS)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # accepted, not used

    @field_validator("stop", mode="before")
    @classmethod
    def _check_stop(cls, value: Any) -> list[str] | None:
        return _stop(value)

    @field_validator("logit_bias")
    @classmethod
    def _check_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not (token.isascii() and token.isdigit()):
                raise ValueError(f"logit_bias keys are token ids, got {token!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias values must be in [-100, 100], got {bias!r} for token {token}")
        return value


class CompletionRequest(Sampling):
    prompt: Any
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    suffix: None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        return _texts(value, "prompt", MAX_PROMPTS, allow_ids=True)


class Message(Strict):
    role: str
    content: Any = None  # a string, a list of {"type": "text", "text": ...} parts, or null
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _check_content(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValueError("content must be a string or a list of text parts")
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str) \
                    or set(part) != {"type", "text"}:
                raise ValueError(f'content[{index}] must be {{"type": "text", "text": "..."}} (only text parts are served)')
        return value

    @field_validator("role")
    @classmethod
    def _check_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"unknown role {value!r}; use one of {', '.join(ROLES)}")
        return value

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part["text"] for part in self.content)
        return self.content or ""


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


class EmbeddingRequest(Strict):
    model: str
    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        return _texts(value, "input", MAX_INPUTS, allow_ids=True)


class ClassifyRequest(Strict):
    model: str
    input: str | list[str] | list[list[str]]

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            if len(value) > MAX_INPUTS or not all(len(v) == 2 and all(isinstance(t, str) for t in v) for v in value):
                raise ValueError(f"input pairs must be [text_a, text_b] lists of strings, at most {MAX_INPUTS}")
            return value
        return _texts(value, "input", MAX_INPUTS, allow_ids=False)


class RerankRequest(Strict):
    model: str
    query: str = Field(min_length=1)
    documents: list[str] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True


class SearchRequest(Strict):
    index: str
    query: str | list[str]
    k: int = Field(10, ge=1, le=1000)
    filter: dict[str, str | int | float | bool] | None = None

    @field_validator("query", mode="before")
    @classmethod
    def _check_query(cls, value: Any) -> Any:
        return _texts(value, "query", MAX_INPUTS, allow_ids=False)


class TokenizeRequest(Strict):
    model: str
    prompt: str | None = None
    messages: list[Message] | None = Field(None, min_length=1, max_length=MAX_MESSAGES)
    add_special_tokens: bool = True


class DetokenizeRequest(Strict):
    model: str
    tokens: list[int] = Field(max_length=1_000_000)
