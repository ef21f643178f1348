"""Helpers every route uses: parsing a body into its schema, prompts as token ids, disconnects.

Bodies are parsed and validated in one step by pydantic (`model_validate_json`): invalid UTF-8,
text that is not JSON, JSON nested too deep and values of the wrong type all become a 400 that
names the field, never FastAPI's 422 body. Tokenizing runs in a worker thread (a long text takes
a while), and a prompt that cannot fit the context is found from a bounded prefix of it rather
than by tokenizing all of a 2M-character input.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from polyformer.server.errors import APIError, ClientGone, bad_request, validation_error

Schema = TypeVar("Schema", bound=BaseModel)


async def parse(request: Request, schema: type[Schema]) -> Schema:
    body = await request.body()
    try:
        return schema.model_validate_json(body)
    except ValidationError as error:
        raise validation_error(error) from None


def request_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


async def blocking(function: Any, *args: Any) -> Any:
    """Run `function(*args)` in a worker thread, off the event loop."""
    return await asyncio.to_thread(function, *args)


async def until_disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def encode_prompts(tokenizer, texts: Sequence[str], limit: int, add_special_tokens: bool, param: str) -> list[list[int]]:
    """Token ids of each text; a 400 naming `param` when one is longer than `limit` tokens."""
    batch = tokenizer(list(texts), padding=False, truncation=True, max_length=limit + 1, return_tensors=None,
                      add_special_tokens=add_special_tokens)
    rows = batch["input_ids"]
    for index, row in enumerate(rows):
        where = f"{param}[{index}]" if len(rows) > 1 else param
        if len(row) > limit:
            raise APIError(400, f"{where} is longer than the model's context of {limit} tokens; shorten it", param,
                           "context_length_exceeded")
        if not row:
            raise bad_request(f"{where} gives no tokens; give some text", param)
    return rows


def check_ids(rows: Sequence[Sequence[int]], vocab_size: int, param: str) -> None:
    """Every id must be a token of the vocabulary."""
    for index, row in enumerate(rows):
        bad = next((token for token in row if not 0 <= token < vocab_size), None)
        if bad is not None:
            raise bad_request(f"{param}[{index}] holds token id {bad}, outside the vocabulary of {vocab_size}", param)


async def unless_disconnected(request: Request, awaitable: Any) -> Any:
    """The awaitable's result; if the client disconnects first, cancel it and raise ClientGone."""
    task = asyncio.ensure_future(awaitable)
    watcher = asyncio.ensure_future(until_disconnected(request))
    done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        watcher.cancel()
        return task.result()
    task.cancel()
    raise ClientGone()
