"""What the embedded Tansu broker gets wrong, and how the worker keeps users away from it."""

from __future__ import annotations

import os
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from recloop.core.errors import InvalidInputError
from recloop.streams.transport import last_batch_ends
from tests.support import run_recloop


async def _one_batch_of_five(bootstrap: str) -> tuple[TopicPartition, list[int], int]:
    """Five records sent as one record batch to a new topic: (partition, the offsets a consumer
    reads, the end offset the broker reports)."""
    tp = TopicPartition(f"hw-{uuid.uuid4().hex[:8]}", 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        for i in range(5):
            batch.append(key=None, value=b"v%d" % i, timestamp=None)
        batch.close()
        await (await producer.send_batch(batch, tp.topic, partition=0))
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = (await consumer.getmany(tp, timeout_ms=5000)).get(tp, [])
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    return tp, [r.offset for r in records], end


async def test_tansu_still_reports_the_end_offset_of_a_batch_below_its_records(tansu) -> None:
    """Tansu answers ListOffsets(latest) with the first offset of the partition's last record
    batch + 1 (tansu-storage `dynostore.rs`, `list_offsets`). This pins the defect that the
    RocksDB guard below and `last_batch_ends` exist for: when it fails, Tansu is fixed, the
    guard in `recloop/cli/worker.py` can go and the RocksDB SIGKILL test can run on Tansu too."""
    _, offsets, end = await _one_batch_of_five(tansu.bootstrap)
    assert offsets == [0, 1, 2, 3, 4]
    assert end == 1, f"Tansu now reports end offset {end} for 5 records: lift the RocksDB guard"


async def test_the_worker_restores_tables_to_the_true_end_of_the_changelog(broker) -> None:
    """Faust restores a table up to the end offset the broker reports; on Tansu that left the
    last changelog batch's records out (users' state one batch behind after a SIGKILL). The
    worker reads each changelog partition's end from its last batch instead (the same answer
    where the broker is right)."""
    tp, offsets, reported = await _one_batch_of_five(broker.bootstrap)
    assert offsets == [0, 1, 2, 3, 4]
    ends = await last_batch_ends({"bootstrap_servers": broker.bootstrap}, {tp: reported})
    assert ends == {tp: 5}, (broker.kind, reported)


def test_the_worker_refuses_rocksdb_on_tansu_with_the_reason(tansu, tmp_path) -> None:
    env = {
        **os.environ,
        "RECLOOP_WORKER__STORE": "rocksdb",
        "RECLOOP_WORKER__DATA_DIR": str(tmp_path / "worker"),
        "RECLOOP_TOPICS__EVENTS": f"rocks-{uuid.uuid4().hex[:8]}.events",
    }
    proc = run_recloop(
        "worker", "--strategy", "random", "--bootstrap", tansu.bootstrap, timeout=120, env=env
    )
    assert proc.returncode == InvalidInputError.exit_code, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "worker.store=rocksdb does not work on the embedded Tansu broker" in last
    assert "worker.store=memory" in last and "Traceback" not in proc.stderr
