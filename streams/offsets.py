"""Which offsets of the events topic the worker may commit: its own ledger, not Faust's.

Faust decides what to commit from the messages its streams ack, and it drops or skips
messages on the way to the agent: after the seek it does at every assignment, records fetched
before the seek can reach the agent first; Faust then counts the offsets they jumped over as a
"gap" that may be committed, and drops the re-fetched records below its read offset. A worker
restarted after a SIGKILL committed offsets 15..45 of a partition it never processed
(streams/README.md, "Delivery guarantees"). Faust also discards fetched records while its flow
is paused or when the generation changes.

So the worker keeps its own account per partition, from the committed offset on:

* `anchor` starts a partition at its committed offset when Faust seeks there (at every
  assignment); records delivered before that are skipped;
* `receive` says what to do with each record that reaches the agent, in offset order: process
  it, skip it (a record already taken, delivered again), or seek back because records before
  it never arrived. Records fetched before that seek are skipped until the stream restarts.
  A hole that is still there after `CONFIRMING_SEEKS` fresh fetches has no records in the log
  (transaction markers, compaction, aborted transactions) and is passed over;
* `settle` marks an offset whose answers and state update the broker has acknowledged;
* `commit_offset` is the end of the settled run from the committed offset, the only offset
  handed to Faust to commit;
* `stalled` names the partitions that have records waiting (the broker's end is past `next`)
  but delivered nothing for a while, to be fetched again from `next`. A hole only shows when
  a later record arrives; after a restart that was racing a fetch, a partition whose last
  records were lost on the way had no later record to reveal them and stalled for good
  (1 SIGKILL test run in 25 under load). The loss was Faust's flow control emptying the
  agent's queue after the seek (fetched again since, `streams/transport.py`); this check
  stays as a guard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

log = logging.getLogger("recloop.worker")

TP = TypeVar("TP")
"""A topic-partition (Faust's `TP`); any hashable works, which keeps the ledger testable."""

CONFIRMING_SEEKS = 2
"""Fresh fetches that must start past a hole before it counts as a hole in the log itself."""

STALL_REFETCHES = 3
"""Fetches again of a stalled partition for one end offset; after that it waits for the end to
move (the offsets up to it may hold no records: transaction markers at the end of the log)."""


class Verdict(Enum):
    """What the agent does with a record."""

    PROCESS = "process"
    SKIP = "skip"  # ack it, do nothing else: taken before, or fetched before a seek
    SEEK = "seek"  # ack it, do nothing else, and seek the partition to `next_offset`


@dataclass
class _Partition:
    next: int  # the next offset to process
    frontier: int  # every offset below it is settled (or committed before)
    settled: set[int] = field(default_factory=set)  # settled offsets at or above the frontier
    seeking: bool = False  # a seek back to `next` is under way
    last_seen: int = -1  # the highest offset delivered since that seek (records fetched before it)
    seeks: int = 0  # seeks for the current hole
    heard: float = 0.0  # when a record was last delivered (or the partition last anchored)
    stall_end: int = -1  # the end offset of the last stall re-fetch
    stall_refetches: int = 0  # re-fetches for a stall at `stall_end`

    def settle_below(self, end: int) -> None:
        self.settled.update(range(self.frontier, end))
        self.advance()

    def advance(self) -> None:
        while self.frontier in self.settled:
            self.settled.discard(self.frontier)
            self.frontier += 1


class OffsetLedger(Generic[TP]):
    """Per partition: what to do with each delivered record, and the offset safe to commit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._parts: dict[TP, _Partition] = {}
        self._clock = clock
        self.holes_refetched = 0
        self.holes_skipped = 0
        self.stalls_refetched = 0

    def anchor(self, tp: TP, committed: int) -> None:
        """Start (or restart) `tp` at its committed offset, after Faust seeks it there."""
        part = self._parts.get(tp)
        if part is None:
            self._parts[tp] = _Partition(next=committed, frontier=committed, heard=self._clock())
            return
        part.heard = self._clock()
        # Settled offsets stay settled: their answers are on the broker whatever the seek.
        part.next = committed
        part.frontier = max(part.frontier, committed)
        part.settled = {o for o in part.settled if o >= part.frontier}
        part.advance()
        part.seeking, part.last_seen, part.seeks = False, -1, 0

    def retain(self, tps: set[TP]) -> None:
        """Forget partitions that are no longer assigned."""
        for tp in [tp for tp in self._parts if tp not in tps]:
            del self._parts[tp]

    def partitions(self) -> list[TP]:
        return list(self._parts)

    def receive(self, tp: TP, offset: int) -> Verdict:
        """The verdict for the record at `offset` of `tp`, in delivery order."""
        part = self._parts.get(tp)
        if part is None:
            # Delivered before Faust's seek to the committed offset, which comes with every
            # assignment and anchors the partition; whatever is skipped now is fetched again
            # (by that seek, or by ours when the first anchored record is past the anchor).
            return Verdict.SKIP
        part.heard = self._clock()
        if part.seeking:
            if offset > part.last_seen:  # fetched before the seek went through
                part.last_seen = offset
                return Verdict.SKIP
            part.seeking = False  # the stream restarted at `offset`
            if offset > part.next:
                if part.seeks < CONFIRMING_SEEKS:
                    return self._seek(part, offset)
                log.warning("no records at offsets %d..%d of %s", part.next, offset - 1, tp)
                self.holes_skipped += 1
                part.settle_below(offset)
                part.next = offset
        if offset < part.next:
            return Verdict.SKIP
        if offset > part.next:
            part.seeks = 0
            return self._seek(part, offset)
        part.next = offset + 1
        part.seeks = 0
        return Verdict.PROCESS

    def _seek(self, part: _Partition, offset: int) -> Verdict:
        if part.seeks == 0:
            self.holes_refetched += 1
        part.seeking, part.last_seen = True, offset
        part.seeks += 1
        return Verdict.SEEK

    def stalled(self, ends: Mapping[TP, int], quiet_seconds: float) -> dict[TP, int]:
        """The partitions to fetch again, each with the offset to fetch from.

        A partition is stalled when the broker's end offset (`ends`) is past its next offset
        and nothing reached the agent for `quiet_seconds`. Each is returned at most
        `STALL_REFETCHES` times for the same end; a partition that is only behind because
        its worker is slow delivers in the meantime and is never named.
        """
        now = self._clock()
        stalled: dict[TP, int] = {}
        for tp, part in self._parts.items():
            end = ends.get(tp)
            if end is None or end <= part.next or now - part.heard < quiet_seconds:
                continue
            if end != part.stall_end:
                part.stall_end, part.stall_refetches = end, 0
            if part.stall_refetches >= STALL_REFETCHES:
                continue
            part.stall_refetches += 1
            part.heard = now  # the next check waits a quiet period for this fetch
            self.stalls_refetched += 1
            stalled[tp] = part.next
        return stalled

    def hear_all(self) -> None:
        """Count every partition as just heard from (while nothing can be delivered)."""
        now = self._clock()
        for part in self._parts.values():
            part.heard = now

    def describe(self) -> str:
        """One line per partition (next, committable, pending settles, seek state), for logs."""
        return "; ".join(
            f"{tp}: next {p.next} commit {p.frontier} settled-ahead {len(p.settled)}"
            + (f" seeking (last seen {p.last_seen}, seek {p.seeks})" if p.seeking else "")
            for tp, p in self._parts.items()
        )

    def next_offset(self, tp: TP) -> int:
        """The offset a SEEK verdict asks to seek to."""
        return self._parts[tp].next

    def settle(self, tp: TP, offset: int) -> None:
        """`offset` was processed and everything it caused is on the broker."""
        part = self._parts.get(tp)
        if part is None or offset < part.frontier:
            return
        part.settled.add(offset)
        part.advance()

    def commit_offset(self, tp: TP) -> int | None:
        """The offset to commit for `tp`: every offset below it is settled."""
        part = self._parts.get(tp)
        return None if part is None else part.frontier
