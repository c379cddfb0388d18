"""Prometheus metrics on the app's own registry (not the process-global one), so that several apps
can live in one process (tests, benchmarks) and each reports only itself.

Names follow text-embeddings-inference's (``te_request_count``, ``te_queue_duration``, ...) with
the ``jinav3_`` prefix and Prometheus' unit suffixes.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TOKENS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("jinav3_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.request_duration = Histogram("jinav3_request_duration_seconds", "Time from request to response",
                                          ["route"], buckets=_SECONDS, registry=r)
        self.queue_duration = Histogram("jinav3_queue_duration_seconds", "Time a request waited for its first batch",
                                        buckets=_SECONDS, registry=r)
        self.inference_duration = Histogram("jinav3_inference_duration_seconds", "Time of one batch on the model",
                                            buckets=_SECONDS, registry=r)
        self.batch_tokens = Histogram("jinav3_batch_tokens", "Tokens per batch", buckets=_TOKENS, registry=r)
        self.batch_inputs = Histogram("jinav3_batch_inputs", "Inputs per batch", buckets=_COUNTS, registry=r)
        self.batch_requests = Histogram("jinav3_batch_requests", "Requests sharing a batch", buckets=_COUNTS,
                                        registry=r)
        self.tokens_embedded = Counter("jinav3_tokens_embedded", "Tokens run through the model", registry=r)
        self.inputs_embedded = Counter("jinav3_inputs_embedded", "Inputs embedded", registry=r)
        self.queue_depth = Gauge("jinav3_queue_depth", "Requests waiting for the model", registry=r)
        self.in_flight = Gauge("jinav3_requests_in_flight", "Embedding requests admitted and not yet answered",
                               registry=r)
        self.forward_passes = Counter("jinav3_forward_passes", "Calls into the model (encode / token_states)",
                                      ["kind"], registry=r)
        self.task_switches = Counter("jinav3_task_switches", "Batches whose task differs from the previous batch's",
                                     registry=r)
        self.dropped = Counter("jinav3_dropped_requests", "Requests whose client left before their work finished",
                               registry=r)
        self.model_ready = Gauge("jinav3_model_ready", "1 once the model is loaded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
