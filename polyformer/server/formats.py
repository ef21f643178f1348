"""Response bodies in OpenAI's shapes: completions, chat completions, their stream chunks, logprobs.

Each function takes what the engine produced (text, token ids, log-probabilities) and returns the
JSON-ready dict the official clients parse; `sse` frames one server-sent event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from polyformer.server.generation import TopLogprobs

DONE = b"data: [DONE]\n\n"


@dataclass
class RowResult:
    """What one row produced, gathered from its events."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    tops: list[TopLogprobs | None] = field(default_factory=list)
    prompt_logprobs: list[float | None] | None = None
    prompt_tops: list[TopLogprobs | None] | None = None
    finish_reason: str | None = None
    error: str | None = None


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def token_text(tokenizer, token: int) -> str:
    return tokenizer.decode([token], skip_special_tokens=False)


def completion_logprobs(tokenizer, ids: list[int], logprobs: list[float | None], tops: list[TopLogprobs | None],
                        offset: int) -> dict[str, Any]:
    """The legacy completions `logprobs` object for tokens starting at character `offset`."""
    tokens = [token_text(tokenizer, token) for token in ids]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    top = [None if t is None else {token_text(tokenizer, i): v for i, v in t} for t in tops]
    return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": top, "text_offset": offsets}


def chat_logprobs(tokenizer, ids: list[int], logprobs: list[float], tops: list[TopLogprobs | None]) -> dict[str, Any]:
    """The chat `logprobs` object: one entry per generated token with its top alternatives."""
    def entry(token: int, value: float) -> dict[str, Any]:
        text = token_text(tokenizer, token)
        return {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}

    content = []
    for token, value, top in zip(ids, logprobs, tops):
        item = entry(token, value)
        item["top_logprobs"] = [entry(i, v) for i, v in top or []]
        content.append(item)
    return {"content": content}


def completion_body(request_id: str, created: int, model: str, choices: list[dict[str, Any]],
                    prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"id": request_id, "object": "text_completion", "created": created, "model": model, "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens), "system_fingerprint": None}


def completion_choice(index: int, text: str, logprobs: dict[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def completion_chunk(request_id: str, created: int, model: str, choice: dict[str, Any] | None,
                     usage_: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {"id": request_id, "object": "text_completion", "created": created, "model": model,
                            "choices": [choice] if choice is not None else [], "system_fingerprint": None}
    if usage_ is not None:
        body["usage"] = usage_
    return sse(body)


def chat_body(request_id: str, created: int, model: str, choices: list[dict[str, Any]],
              prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion", "created": created, "model": model, "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens), "system_fingerprint": None}


def chat_choice(index: int, text: str, logprobs: dict[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
            "finish_reason": finish_reason}


def chat_chunk(request_id: str, created: int, model: str, index: int | None, delta: dict[str, Any] | None,
               finish_reason: str | None = None, logprobs: dict[str, Any] | None = None,
               usage_: dict[str, int] | None = None) -> bytes:
    choices = [] if index is None else [{"index": index, "delta": delta or {}, "logprobs": logprobs,
                                          "finish_reason": finish_reason}]
    body: dict[str, Any] = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": choices, "system_fingerprint": None}
    if usage_ is not None:
        body["usage"] = usage_
    return sse(body)


def stream_error(message: str) -> bytes:
    return sse({"error": {"message": message, "type": "server_error", "param": None, "code": "generation_failed"}})
