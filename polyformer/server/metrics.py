"""Prometheus metrics of one server, in a registry of its own (so several apps can live in one process).

    polyformer_requests_total{endpoint, status}          requests answered
    polyformer_requests_running / _waiting               requests in service / queued for it
    polyformer_request_seconds{endpoint}                 end-to-end latency (histogram)
    polyformer_prompt_tokens_total{model}                tokens read (prompts, texts to embed or classify)
    polyformer_generated_tokens_total{model}             tokens generated
    polyformer_time_to_first_token_seconds{model}        histogram
    polyformer_inter_token_seconds{model}                histogram of the gaps between a row's tokens
    polyformer_generation_rows_running{model}            sequences in the decode batch (busy slots)
    polyformer_generation_rows_waiting{model}            sequences waiting for a slot
    polyformer_generation_cancelled_total{model}         sequences ended by a client disconnect
    polyformer_batch_size{model, kind}                   rows per decode step / embedding / classification batch
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The counters, gauges and histograms the server updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("polyformer_requests", "Requests answered", ["endpoint", "status"], registry=r)
        self.running = Gauge("polyformer_requests_running", "Requests in service", registry=r)
        self.waiting = Gauge("polyformer_requests_waiting", "Requests waiting for service", registry=r)
        self.latency = Histogram("polyformer_request_seconds", "End-to-end request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("polyformer_prompt_tokens", "Tokens read", ["model"], registry=r)
        self.generated_tokens = Counter("polyformer_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.ttft = Histogram("polyformer_time_to_first_token_seconds", "Time to first token", ["model"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.inter_token = Histogram("polyformer_inter_token_seconds", "Gap between a sequence's tokens", ["model"],
                                     buckets=TOKEN_BUCKETS, registry=r)
        self.rows_running = Gauge("polyformer_generation_rows_running", "Sequences in the decode batch", ["model"],
                                  registry=r)
        self.rows_waiting = Gauge("polyformer_generation_rows_waiting", "Sequences waiting for a slot", ["model"],
                                  registry=r)
        self.cancelled = Counter("polyformer_generation_cancelled", "Sequences cancelled by the client", ["model"],
                                 registry=r)
        self.batch_size = Histogram("polyformer_batch_size", "Rows per model batch", ["model", "kind"],
                                    buckets=BATCH_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
