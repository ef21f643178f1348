"""The continuous-batching engine on its own (no HTTP): every row gives what the pipeline gives it alone.

Rows with different prompts, settings and seeds join a running batch at different times; greedy
rows equal `TextGenerationPipeline.complete` (the CLI's code path), seeded sampled rows draw the
same text as the pipeline with that seed, stop strings cut exactly. A cancelled row leaves at
once and frees its slot, and a row that fails inside the loop ends alone while the others finish.
"""

from __future__ import annotations

import asyncio

import pytest

from test_generate import one_thread  # noqa: F401 - tiny models decode fastest on one thread
from test_generate_pipeline import tiny_chat_pipeline

from polyformer.server.generation import FinishEvent, GenerationEngine, RowRequest, Ticket, TokenEvent
from polyformer.server.metrics import Metrics

PROMPTS = ["the cat sat", "a dog ran in the park and", "café crème", "hello"]


@pytest.fixture(scope="module")
def pipe():
    return tiny_chat_pipeline()


@pytest.fixture
def engine(pipe):
    engine = GenerationEngine("tiny", pipe.model, pipe.tokenizer, slots=3, metrics=Metrics())
    engine.start()
    yield engine
    engine.stop()


def row(pipe, prompt: str, **options) -> RowRequest:
    return RowRequest(pipe.tokenizer.encode(prompt), pipe.request(**options))


async def gather(ticket: Ticket, rows: int, seen: tuple = ()) -> list[dict]:
    """Every row's text, tokens and finish reason (`seen`: events already taken from the queue)."""
    out = [{"text": "", "tokens": [], "reason": None} for _ in range(rows)]
    finished = 0
    pending = list(seen)
    while finished < rows:
        event = pending.pop(0) if pending else await asyncio.wait_for(ticket.events.get(), 60)
        if isinstance(event, TokenEvent):
            out[event.row]["text"] += event.text
            out[event.row]["tokens"].append(event.token_id)
        elif isinstance(event, FinishEvent):
            out[event.row]["reason"] = event.reason
            out[event.row]["error"] = event.error
            finished += 1
    return out


def test_rows_joining_a_running_batch_equal_the_pipeline_alone(pipe, engine):
    settings = [dict(max_new_tokens=20), dict(max_new_tokens=14, temperature=1.0, top_k=20, top_p=0.9, seed=3),
                dict(max_new_tokens=9, temperature=0.8, seed=11, repetition_penalty=1.3), dict(max_new_tokens=16)]
    expected = [pipe.complete([p], **s)[0] for p, s in zip(PROMPTS, settings)]

    async def run() -> list[dict]:
        loop = asyncio.get_running_loop()
        first = Ticket(loop)
        engine.submit(first, [row(pipe, PROMPTS[0], **settings[0]), row(pipe, PROMPTS[1], **settings[1])])
        started = await first.events.get()  # the batch is running; the next rows join it (one waits for a slot)
        second = Ticket(loop)
        engine.submit(second, [row(pipe, p, **s) for p, s in zip(PROMPTS[2:], settings[2:])])
        return [*await gather(first, 2, (started,)), *await gather(second, 2)]

    got = asyncio.run(run())
    for result, want in zip(got, expected):
        assert result["text"] == want.text and result["reason"] == want.finish_reason
        assert result["tokens"] == want.token_ids
    assert engine.steps.in_use() == 0


def test_stop_strings_cut_exactly_and_end_the_row(pipe, engine):
    free = pipe.complete([PROMPTS[0]], max_new_tokens=20)[0].text
    stop = free[3:6]
    want = pipe.complete([PROMPTS[0]], max_new_tokens=20, stop=[stop])[0]
    assert want.finish_reason == "stop" and stop not in want.text

    async def run() -> list[dict]:
        ticket = Ticket(asyncio.get_running_loop())
        engine.submit(ticket, [row(pipe, PROMPTS[0], max_new_tokens=20, stop=[stop])])
        return await gather(ticket, 1)

    (got,) = asyncio.run(run())
    assert (got["text"], got["reason"], got["tokens"]) == (want.text, "stop", want.token_ids)


def test_a_cancelled_row_leaves_at_once_and_frees_its_slot(pipe, engine):
    async def run() -> tuple[list[dict], int]:
        ticket = Ticket(asyncio.get_running_loop())
        engine.submit(ticket, [row(pipe, PROMPTS[1], max_new_tokens=80, temperature=1.0, seed=0)])
        started = await ticket.events.get()
        ticket.cancel()
        results = await gather(ticket, 1, (started,))
        return results, engine.steps.in_use()

    (got,), busy = asyncio.run(run())
    assert got["reason"] == "cancelled" and len(got["tokens"]) < 80
    assert busy == 0


def test_a_failing_row_ends_alone_and_the_loop_goes_on(pipe, engine):
    broken = row(pipe, PROMPTS[2], max_new_tokens=8)
    broken.config.logit_bias = {10_000: 1.0}  # past the vocabulary: fails inside the loop, not at the door
    want = pipe.complete([PROMPTS[0]], max_new_tokens=12)[0]

    async def run() -> list[dict]:
        loop = asyncio.get_running_loop()
        ticket = Ticket(loop)
        engine.submit(ticket, [row(pipe, PROMPTS[0], max_new_tokens=12), broken])
        results = await gather(ticket, 2)
        after = Ticket(loop)
        engine.submit(after, [row(pipe, PROMPTS[0], max_new_tokens=12)])
        return results + await gather(after, 1)

    good, bad, later = asyncio.run(run())
    assert bad["reason"] == "error" and "vocabulary" in bad["error"]
    assert good["text"] == want.text == later["text"]
    assert engine.steps.in_use() == 0


def test_metrics_count_tokens_rows_and_batches(pipe):
    metrics = Metrics()
    engine = GenerationEngine("tiny", pipe.model, pipe.tokenizer, slots=2, metrics=metrics)
    engine.start()
    try:
        async def run() -> list[dict]:
            ticket = Ticket(asyncio.get_running_loop())
            engine.submit(ticket, [row(pipe, p, max_new_tokens=6, eos_token_id=[]) for p in PROMPTS[:3]])
            return await gather(ticket, 3)

        asyncio.run(run())
    finally:
        engine.stop()
    sample = metrics.registry.get_sample_value
    assert sample("polyformer_generated_tokens_total", {"model": "tiny"}) == 18
    assert sample("polyformer_time_to_first_token_seconds_count", {"model": "tiny"}) == 3
    assert sample("polyformer_inter_token_seconds_count", {"model": "tiny"}) == 15
    assert sample("polyformer_batch_size_sum", {"model": "tiny", "kind": "decode"}) == 15  # 5 steps of 2, 5 of 1
    assert sample("polyformer_generation_rows_running", {"model": "tiny"}) == 0
