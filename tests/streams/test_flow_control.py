"""`transport._FlowControl`: what Faust's flow control drops from the stream queues (records
the consumer already fetched) is handed on to be fetched again, at every resume and clear."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import Message
from mode.utils.queues import FlowControlQueue

from recloop.streams.transport import _FlowControl


def _event(offset: int, partition: int = 0) -> SimpleNamespace:
    """A stand-in for the faust Event a channel queue holds: only its message is read."""
    message = Message("events", partition, offset, 0.0, 0, None, b"k", b"v", None)
    return SimpleNamespace(message=message)


async def test_resume_hands_the_records_it_clears_to_on_drop() -> None:
    dropped: list[list[Message]] = []
    flow = _FlowControl(dropped.append)
    queue: FlowControlQueue[object] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    kept: FlowControlQueue[object] = FlowControlQueue(flow_control=flow)  # not cleared by Faust
    for offset in (30, 31, 32):
        queue.put_nowait(_event(offset, partition=3))
    kept.put_nowait(_event(7))
    queue.put_nowait("not an event")  # anything without a message is cleared and ignored

    flow.resume()

    assert queue.empty() and kept.qsize() == 1
    assert [[(m.tp.partition, m.offset) for m in batch] for batch in dropped] == [
        [(3, 30), (3, 31), (3, 32)]
    ]
    assert flow.is_active()


async def test_a_clear_with_nothing_queued_reports_nothing() -> None:
    dropped: list[list[Message]] = []
    flow = _FlowControl(dropped.append)
    FlowControlQueue(flow_control=flow, clear_on_resume=True)
    flow.suspend()
    flow.clear()
    flow.resume()
    assert dropped == []
