"""`/v1/completions` and `/v1/chat/completions`: requests become engine rows, events become responses.

A request is checked whole before any row is queued: prompts tokenized (chat messages through
the model's chat template, its special tokens already in the text), every prompt + max_tokens
within the context (a 400 naming both numbers), the sampling settings turned into a
`GenerationConfig` with the model's EOS ids (as `TextGenerationPipeline.request` does for the
CLI). `n` choices are n independent rows; with a seed, row j of a prompt uses seed + j, so the
first choice is what `polyformer generate --seed S` prints. Rows of all prompts and choices go
to the model's engine together and are read back from one ticket; a client that disconnects
(streaming or not) cancels its rows, which leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from polyformer.generation.sampling import make_config
from polyformer.server import formats
from polyformer.server.common import blocking, check_ids, encode_prompts, parse, request_id, until_disconnected
from polyformer.server.errors import APIError, ClientGone, bad_request
from polyformer.server.generation import FinishEvent, PromptEvent, RowRequest, Ticket, TokenEvent
from polyformer.server.registry import ServedModel
from polyformer.server.schemas import MAX_ROWS, MAX_SEED, ChatRequest, CompletionRequest, Sampling

router = APIRouter()
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Prompt:
    ids: list[int]
    text: str


@dataclass
class Plan:
    """A checked generation request: its rows, ready for the engine."""

    served: ServedModel
    prompts: list[Prompt]
    rows: list[RowRequest]
    n: int
    id: str
    created: int

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p.ids) for p in self.prompts)


# ---- building rows ------------------------------------------------------------------------------
def sampling_options(request: Sampling, served: ServedModel, max_tokens: int) -> dict:
    vocab = served.model.config.vocab_size
    bias = {int(token): value for token, value in (request.logit_bias or {}).items()}
    outside = next((token for token in bias if token >= vocab), None)
    if outside is not None:
        raise bad_request(f"logit_bias names token id {outside}, outside the vocabulary of {vocab}", "logit_bias")
    return {"max_new_tokens": max_tokens, "temperature": request.temperature, "top_k": max(0, request.top_k),
            "top_p": request.top_p, "min_p": request.min_p, "repetition_penalty": request.repetition_penalty,
            "presence_penalty": request.presence_penalty, "frequency_penalty": request.frequency_penalty,
            "logit_bias": bias, "stop": request.stop or [], "seed": request.seed}


def check_fit(served: ServedModel, prompts: list[Prompt], max_tokens: int) -> None:
    """prompt + max_tokens must fit the context (a 400 naming both numbers)."""
    context = served.context_length
    decoder = served.model.config.arch == "decoder"
    for index, prompt in enumerate(prompts):
        used = len(prompt.ids) if decoder else 1
        if used + max_tokens > context:
            where = f"prompt {index}" if len(prompts) > 1 else "the prompt"
            raise APIError(400, f"{where} ({len(prompt.ids)} tokens) + max_tokens ({max_tokens}) = "
                                f"{used + max_tokens} exceeds the model's context of {context} tokens; lower "
                                "max_tokens or shorten the prompt", "max_tokens", "context_length_exceeded")


def make_plan(served: ServedModel, request: Sampling, prompts: list[Prompt], max_tokens: int,
              top_logprobs: int | None, prompt_logprobs: bool, prefix: str) -> Plan:
    if len(prompts) * request.n > MAX_ROWS:
        raise bad_request(f"{len(prompts)} prompts x n={request.n} is {len(prompts) * request.n} sequences; at most "
                          f"{MAX_ROWS} per request", "n")
    check_fit(served, prompts, max_tokens)
    base = served.pipe.request(**sampling_options(request, served, max_tokens))
    configs = [base if base.seed is None or j == 0 else make_config(base, seed=(base.seed + j) % MAX_SEED)
               for j in range(request.n)]
    rows = [RowRequest(prompt.ids, config, top_logprobs, prompt_logprobs) for prompt in prompts for config in configs]
    return Plan(served, prompts, rows, request.n, request_id(prefix), int(time.time()))


async def completion_prompts(served: ServedModel, prompt) -> list[Prompt]:
    tokenizer, context = served.tokenizer, served.context_length
    items = [prompt] if isinstance(prompt, str) or isinstance(prompt[0], int) else prompt
    if isinstance(items[0], str):
        ids = await blocking(encode_prompts, tokenizer, items, context, True, "prompt")
        return [Prompt(row, text) for row, text in zip(ids, items)]
    check_ids(items, served.model.config.vocab_size, "prompt")
    for index, row in enumerate(items):
        if len(row) > context:
            raise APIError(400, f"prompt[{index}] ({len(row)} tokens) is longer than the model's context of {context} "
                                "tokens", "prompt", "context_length_exceeded")
    return [Prompt(list(row), tokenizer.decode(row)) for row in items]


async def chat_prompt(served: ServedModel, request: ChatRequest) -> Prompt:
    messages = [{"role": m.role, "content": m.text()} for m in request.messages]
    text = await blocking(served.pipe.chat_prompt, messages)
    ids = await blocking(encode_prompts, served.tokenizer, [text], served.context_length, False, "messages")
    return Prompt(ids[0], text)


# ---- running them ------------------------------------------------------------------------------
def submit(plan: Plan) -> Ticket:
    ticket = Ticket(asyncio.get_running_loop())
    plan.served.engine.submit(ticket, plan.rows)  # type: ignore[union-attr]
    return ticket


def apply(results: list[formats.RowResult], event) -> None:
    result = results[event.row]
    if isinstance(event, TokenEvent):
        result.text += event.text
        result.token_ids.append(event.token_id)
        result.logprobs.append(event.logprob)
        result.tops.append(event.top)
    elif isinstance(event, PromptEvent):
        result.prompt_logprobs, result.prompt_tops = event.logprobs, event.top
    elif isinstance(event, FinishEvent):
        result.finish_reason, result.error = event.reason, event.error


async def collect(request: Request, plan: Plan) -> list[formats.RowResult]:
    """Every row's result; ClientGone when the client disconnected first (its rows are cancelled)."""
    ticket = submit(plan)

    async def watch() -> None:
        await until_disconnected(request)
        ticket.cancel()

    watcher = asyncio.ensure_future(watch())
    results = [formats.RowResult() for _ in plan.rows]
    try:
        finished = 0
        while finished < len(results):
            event = await ticket.events.get()
            apply(results, event)
            finished += isinstance(event, FinishEvent)
    finally:
        watcher.cancel()
        ticket.cancel()
    if any(r.finish_reason == "cancelled" for r in results):
        raise ClientGone()
    failed = next((r.error for r in results if r.finish_reason == "error"), None)
    if failed is not None:
        raise APIError(500, f"generation failed: {failed}", code="generation_failed")
    return results


def completion_tokens(results: list[formats.RowResult]) -> int:
    return sum(len(r.token_ids) for r in results)


# ---- /v1/completions ---------------------------------------------------------------------------
@router.post("/v1/completions")
async def completions(request: Request):
    body = await parse(request, CompletionRequest)
    served = request.app.state.service.model(body.model, "completions")
    prompts = await completion_prompts(served, body.prompt)
    echo_logprobs = body.echo and body.logprobs is not None and served.model.config.arch == "decoder"
    plan = make_plan(served, body, prompts, body.max_tokens or 16, body.logprobs, echo_logprobs, "cmpl")
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(stream_completion(plan, body, usage), media_type="text/event-stream",
                                 headers=STREAM_HEADERS)
    results = await collect(request, plan)
    choices = [completion_result(plan, body, index, result) for index, result in enumerate(results)]
    return formats.completion_body(plan.id, plan.created, served.name, choices, plan.prompt_tokens,
                                   completion_tokens(results))


def completion_result(plan: Plan, body: CompletionRequest, index: int, result: formats.RowResult) -> dict:
    prompt = plan.prompts[index // plan.n]
    text = prompt.text + result.text if body.echo else result.text
    logprobs = None
    if body.logprobs is not None:
        tokenizer = plan.served.tokenizer
        ids, values, tops = result.token_ids, list(result.logprobs), list(result.tops)
        offset = len(prompt.text) if body.echo else 0
        if body.echo and result.prompt_logprobs is not None:
            ids, values, tops = prompt.ids + ids, result.prompt_logprobs + values, result.prompt_tops + tops  # type: ignore[operator]
            offset = 0
        logprobs = formats.completion_logprobs(tokenizer, ids, values, tops, offset)
    return formats.completion_choice(index, text, logprobs, result.finish_reason)


async def stream_completion(plan: Plan, body: CompletionRequest, include_usage: bool) -> AsyncIterator[bytes]:
    ticket = submit(plan)
    tokenizer, name = plan.served.tokenizer, plan.served.name
    echoed: set[int] = set()
    finished, produced = 0, 0
    try:
        while finished < len(plan.rows):
            event = await ticket.events.get()
            if body.echo and event.row not in echoed and not isinstance(event, FinishEvent):
                echoed.add(event.row)
                prompt = plan.prompts[event.row // plan.n]
                logprobs = None
                if isinstance(event, PromptEvent):
                    logprobs = formats.completion_logprobs(tokenizer, prompt.ids, event.logprobs, event.top, 0)
                yield formats.completion_chunk(plan.id, plan.created, name,
                                               formats.completion_choice(event.row, prompt.text, logprobs, None))
            if isinstance(event, TokenEvent):
                produced += 1
                logprobs = None
                if body.logprobs is not None:
                    logprobs = formats.completion_logprobs(tokenizer, [event.token_id], [event.logprob], [event.top], 0)
                if event.text or logprobs is not None:
                    yield formats.completion_chunk(plan.id, plan.created, name,
                                                   formats.completion_choice(event.row, event.text, logprobs, None))
            elif isinstance(event, FinishEvent):
                finished += 1
                if event.reason == "error":
                    yield formats.stream_error(f"generation failed: {event.error}")
                    return
                yield formats.completion_chunk(plan.id, plan.created, name,
                                               formats.completion_choice(event.row, "", None, event.reason))
        if include_usage:
            yield formats.completion_chunk(plan.id, plan.created, name, None, formats.usage(plan.prompt_tokens, produced))
        yield formats.DONE
    finally:
        ticket.cancel()


# ---- /v1/chat/completions ----------------------------------------------------------------------
@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    body = await parse(request, ChatRequest)
    served = request.app.state.service.model(body.model, "chat")
    prompt = await chat_prompt(served, body)
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is None:  # OpenAI's default: the rest of the context
        max_tokens = max(1, served.context_length - len(prompt.ids))
    top = (body.top_logprobs or 0) if body.logprobs else None
    plan = make_plan(served, body, [prompt], max_tokens, top, False, "chatcmpl")
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(stream_chat(plan, body, usage), media_type="text/event-stream", headers=STREAM_HEADERS)
    results = await collect(request, plan)
    tokenizer = served.tokenizer
    choices = [formats.chat_choice(index, r.text, formats.chat_logprobs(tokenizer, r.token_ids, r.logprobs, r.tops)
                                   if body.logprobs else None, r.finish_reason) for index, r in enumerate(results)]
    return formats.chat_body(plan.id, plan.created, served.name, choices, plan.prompt_tokens, completion_tokens(results))


async def stream_chat(plan: Plan, body: ChatRequest, include_usage: bool) -> AsyncIterator[bytes]:
    ticket = submit(plan)
    tokenizer, name = plan.served.tokenizer, plan.served.name
    finished, produced = 0, 0
    try:
        for row in range(len(plan.rows)):
            yield formats.chat_chunk(plan.id, plan.created, name, row, {"role": "assistant", "content": ""})
        while finished < len(plan.rows):
            event = await ticket.events.get()
            if isinstance(event, TokenEvent):
                produced += 1
                logprobs = None
                if body.logprobs:
                    logprobs = formats.chat_logprobs(tokenizer, [event.token_id], [event.logprob], [event.top])
                if event.text or logprobs is not None:
                    yield formats.chat_chunk(plan.id, plan.created, name, event.row, {"content": event.text},
                                             logprobs=logprobs)
            elif isinstance(event, FinishEvent):
                finished += 1
                if event.reason == "error":
                    yield formats.stream_error(f"generation failed: {event.error}")
                    return
                yield formats.chat_chunk(plan.id, plan.created, name, event.row, {}, event.reason)
        if include_usage:
            yield formats.chat_chunk(plan.id, plan.created, name, None, None,
                                     usage_=formats.usage(plan.prompt_tokens, produced))
        yield formats.DONE
    finally:
        ticket.cancel()
