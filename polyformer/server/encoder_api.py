"""`/v1/embeddings`, `/v1/classify`, `/v1/rerank`, `/v1/search`, `/v1/tokenize`, `/v1/detokenize`.

Texts are tokenized in a worker thread exactly as `SentenceEncoder.encode` and the task recipes
do (same truncation), then go through the model's `DynamicBatcher`, so concurrent requests share
batches. Embeddings are unit length; `dimensions` keeps the first D components and scales them
back to unit length. Rerank scores are a pair cross-encoder's probability of its relevant label
(or its regression score) when the model is one, else the cosine of query and document embeddings.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from polyformer.server.common import blocking, check_ids, parse, request_id, unless_disconnected
from polyformer.server.errors import bad_request
from polyformer.server.registry import ServedModel
from polyformer.server.schemas import (
    ClassifyRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    RerankRequest,
    SearchRequest,
    TokenizeRequest,
)

router = APIRouter()
RELEVANT_LABELS = ("1", "true", "yes", "relevant", "positive", "entailment", "next", "similar", "paraphrase", "duplicate")


def usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": tokens, "total_tokens": tokens}


# ---- embeddings -------------------------------------------------------------------------------
def embedding_ids(served: ServedModel, inputs: Any) -> list[list[int]]:
    """Token ids per input, truncated to the encoder's max_seq_length like `encode`."""
    encoder = served.encoder
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs[0], str):
        return encoder.token_ids(inputs)
    rows = [inputs] if isinstance(inputs[0], int) else inputs
    check_ids(rows, served.model.config.vocab_size, "input")
    return [list(row)[: encoder.max_seq_length] for row in rows]


async def embed_rows(request: Request, served: Any, rows: list[list[int]]) -> list[np.ndarray]:
    self_metrics = request.app.state.service.metrics
    self_metrics.prompt_tokens.labels(served.name).inc(sum(len(r) for r in rows))
    return await unless_disconnected(request, served.embedder.submit(rows, [len(r) for r in rows]))


def shaped(vector: np.ndarray, dimensions: int | None, encoding: str) -> Any:
    if dimensions is not None:
        vector = vector[:dimensions]
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    vector = vector.astype(np.float32)
    return base64.b64encode(vector.tobytes()).decode("ascii") if encoding == "base64" else vector.tolist()


@router.post("/v1/embeddings")
async def embeddings(request: Request):
    body = await parse(request, EmbeddingRequest)
    served = request.app.state.service.model(body.model, "embeddings")
    if body.dimensions is not None and body.dimensions > served.encoder.dimension:
        raise bad_request(f"dimensions ({body.dimensions}) exceeds the model's {served.encoder.dimension}", "dimensions")
    rows = await blocking(embedding_ids, served, body.input)
    vectors = await embed_rows(request, served, rows)
    data = [{"object": "embedding", "index": index, "embedding": shaped(vector, body.dimensions, body.encoding_format)}
            for index, vector in enumerate(vectors)]
    return {"object": "list", "data": data, "model": served.name, "usage": usage(sum(len(r) for r in rows))}


# ---- classification and rerank -----------------------------------------------------------------
def task_inputs(served: ServedModel, inputs: Any) -> tuple[list[Any], list[int]]:
    """Parsed task inputs and their token counts."""
    from polyformer.tasks.base import TaskOptions

    items = [inputs] if isinstance(inputs, str) else list(inputs)
    pairs = served.task.name == "pair"
    if pairs != isinstance(items[0], list):
        shape = "[text_a, text_b] pairs" if pairs else "strings"
        raise bad_request(f"model {served.name!r} classifies {shape}", "input")
    options = TaskOptions()
    raw = [{"text_a": a, "text_b": b} for a, b in items] if pairs else items
    parsed = [served.task.parse_input(item, f"input[{i}]", options) for i, item in enumerate(raw)]
    texts = [p.text if pairs else _text_of(p) for p in parsed]
    encoded = served.task_tokenizer.encode(texts, [p.text_b for p in parsed] if pairs else None)
    return parsed, [len(e.ids) for e in encoded]


def _text_of(item: Any) -> str:
    return item.text if getattr(item, "text", None) is not None else " ".join(item.words)


async def classify_items(request: Request, served: ServedModel, inputs: Any) -> tuple[list[dict[str, Any]], int]:
    parsed, costs = await blocking(task_inputs, served, inputs)
    request.app.state.service.metrics.prompt_tokens.labels(served.name).inc(sum(costs))
    rows = await unless_disconnected(request, served.classifier.submit(parsed, costs))  # type: ignore[union-attr]
    return rows, sum(costs)


@router.post("/v1/classify")
async def classify(request: Request):
    body = await parse(request, ClassifyRequest)
    served = request.app.state.service.model(body.model, "classify")
    rows, tokens = await classify_items(request, served, body.input)
    data = [{"index": index, **row} for index, row in enumerate(rows)]
    return {"object": "list", "id": request_id("classify"), "model": served.name, "data": data, "usage": usage(tokens)}


def relevance(served: ServedModel, row: dict[str, Any]) -> float:
    """A cross-encoder's relevance: its score (regression) or its relevant label's probability."""
    if "scores" not in row:
        return float(row["score"])
    labels = list(row["scores"])
    chosen = next((label for label in labels if str(label).lower() in RELEVANT_LABELS), labels[-1])
    return float(row["scores"][chosen])


@router.post("/v1/rerank")
async def rerank(request: Request):
    body = await parse(request, RerankRequest)
    served = request.app.state.service.model(body.model, "rerank")
    if served.task is not None and served.task.name == "pair":
        rows, tokens = await classify_items(request, served, [[body.query, doc] for doc in body.documents])
        scores = [relevance(served, row) for row in rows]
    else:
        ids = await blocking(embedding_ids, served, [body.query, *body.documents])
        vectors = await embed_rows(request, served, ids)
        scores = [float(np.dot(vectors[0], v)) for v in vectors[1:]]
        tokens = sum(len(r) for r in ids)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n or len(scores)]
    results = [{"index": i, "relevance_score": scores[i], **({"document": {"text": body.documents[i]}}
                                                              if body.return_documents else {})} for i in order]
    return {"id": request_id("rerank"), "model": served.name, "results": results, "usage": usage(tokens)}


# ---- search -------------------------------------------------------------------------------------
@router.post("/v1/search")
async def search(request: Request):
    body = await parse(request, SearchRequest)
    served = request.app.state.service.index(body.index)
    queries = [body.query] if isinstance(body.query, str) else body.query
    ids = await blocking(served.encoder.token_ids, queries)
    vectors = await unless_disconnected(request, served.embedder.submit(ids, [len(r) for r in ids]))

    def run() -> list[list[Any]]:
        with served.lock:
            return served.index.search(np.stack(vectors), body.k, body.filter)

    hits = await blocking(run)
    data = [{"index": i, "hits": [hit.as_dict() for hit in row]} for i, row in enumerate(hits)]
    return {"object": "list", "index": served.name, "data": data, "usage": usage(sum(len(r) for r in ids))}


# ---- tokenize -----------------------------------------------------------------------------------
@router.post("/v1/tokenize")
async def tokenize(request: Request):
    body = await parse(request, TokenizeRequest)
    served = request.app.state.service.model(body.model, "tokenize")
    if (body.prompt is None) == (body.messages is None):
        raise bad_request("give exactly one of prompt or messages", "prompt")
    tokenizer = served.tokenizer
    if body.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise bad_request(f"model {served.name!r} has no chat template; tokenize a prompt instead", "messages")
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        text = await blocking(lambda: tokenizer.apply_chat_template(messages, add_generation_prompt=True))
        ids = await blocking(lambda: tokenizer.encode(text, add_special_tokens=False))
    else:
        ids = await blocking(lambda: tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens))
    return {"tokens": ids, "count": len(ids), "max_model_len": served.context_length}


@router.post("/v1/detokenize")
async def detokenize(request: Request):
    body = await parse(request, DetokenizeRequest)
    served = request.app.state.service.model(body.model, "tokenize")
    check_ids([body.tokens], served.model.config.vocab_size, "tokens")
    return {"prompt": await blocking(served.tokenizer.decode, body.tokens)}
