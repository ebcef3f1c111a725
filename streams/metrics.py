"""The worker's Prometheus metrics (prometheus-client), all in seconds and `recloop_` prefixed.

Buckets run from 0.5 ms to 5 s. No user or item ids are ever used as label values.
"""

from __future__ import annotations

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

EVENTS = Counter(
    "recloop_worker_events_total", "User events consumed, by event type.", ["event_type"]
)
RECOMMENDATIONS = Counter(
    "recloop_worker_recommendations_total", "Recommendations emitted, by strategy.", ["strategy"]
)
DEAD_LETTERS = Counter(
    "recloop_worker_dead_letters_total", "Messages sent to the dead-letter topic.", ["reason"]
)
REDELIVERED = Counter(
    "recloop_worker_redelivered_events_total",
    "Events seen again after a restart (answered again, state unchanged).",
)
OFFSET_HOLES = Counter(
    "recloop_worker_offset_refetches_total",
    "Seeks back to events the consumer skipped on their way to the worker (after a rebalance).",
)
STALL_REFETCHES = Counter(
    "recloop_worker_stall_refetches_total",
    "Partitions fetched again because records were waiting and none arrived for a while.",
)
DROPPED_REFETCHES = Counter(
    "recloop_worker_dropped_refetches_total",
    "Partitions fetched again because Faust's flow control dropped records it had fetched.",
)
SEQUENCE_GAPS = Counter(
    "recloop_worker_sequence_gaps_total", "Per-user sequence numbers skipped between events."
)
PROCESSING_SECONDS = Histogram(
    "recloop_worker_processing_seconds",
    "Time from consuming an event to emitting its recommendation.",
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "recloop_worker_stage_seconds",
    "Latency of each pipeline stage for answered events (queue = produced to consumed).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "recloop_worker_inference_seconds",
    "Model inference time per batch.",
    ["strategy"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "recloop_worker_inference_batch_size", "Requests per inference batch.", buckets=BATCH_BUCKETS
)
TABLE_USERS = Gauge("recloop_worker_table_users", "Users held in this worker's state table.")
MODEL_INFO = Gauge(
    "recloop_worker_model_info", "The model version being served (value is always 1).",
    ["strategy", "version"],
)  # fmt: skip
CONSUMER_LAG = Gauge(
    "recloop_worker_consumer_lag",
    "Events not yet processed per assigned events partition (high watermark minus next offset).",
    ["partition"],
)
ASSIGNED_PARTITIONS = Gauge(
    "recloop_worker_assigned_partitions", "Events-topic partitions assigned to this worker."
)
MODEL_RELOADS = Counter(
    "recloop_worker_model_reloads_total",
    "Model reload attempts from the model directory, by outcome (loaded or failed).",
    ["outcome"],
)

# Label children looked up once: `.labels()` takes a lock and builds a tuple on every call,
# which showed in the per-event profile. Label values here are small closed sets.
STAGE_QUEUE = STAGE_SECONDS.labels("queue")
STAGE_BATCH_AND_INFER = STAGE_SECONDS.labels("batch_and_infer")
STAGE_EMIT = STAGE_SECONDS.labels("emit")


@cache
def events_counter(event_type: str) -> Counter:
    return EVENTS.labels(event_type)


@cache
def recommendations_counter(strategy: str) -> Counter:
    return RECOMMENDATIONS.labels(strategy)


@cache
def dead_letters_counter(reason: str) -> Counter:
    return DEAD_LETTERS.labels(reason)


@cache
def inference_histogram(strategy: str) -> Histogram:
    return INFERENCE_SECONDS.labels(strategy)
