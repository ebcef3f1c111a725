"""The worker's offset ledger: what is processed, skipped or fetched again, and what may be
committed. The broker-level proof is the SIGKILL test in test_worker_e2e.py."""

from __future__ import annotations

from recloop.streams.offsets import CONFIRMING_SEEKS, STALL_REFETCHES, OffsetLedger, Verdict

P, S, K = Verdict.PROCESS, Verdict.SKIP, Verdict.SEEK


def feed(ledger: OffsetLedger[str], offsets: list[int], tp: str = "p0") -> list[Verdict]:
    return [ledger.receive(tp, o) for o in offsets]


def test_in_order_records_are_processed_and_commit_follows_the_settled_run() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.anchor("p0", 10)
    assert feed(ledger, [10, 11, 12, 13]) == [P, P, P, P]
    assert ledger.commit_offset("p0") == 10
    for offset in (10, 12, 13):  # settled out of order: 11 still out
        ledger.settle("p0", offset)
    assert ledger.commit_offset("p0") == 11
    ledger.settle("p0", 11)
    assert ledger.commit_offset("p0") == 14


def test_the_restart_race_seen_in_a_sigkilled_worker_loses_nothing() -> None:
    """After its seek to committed offset 14 Faust delivered 46..191 first (fetched before the
    seek), then 14.. again. Faust committed 15..45 unprocessed; the ledger seeks back, skips the
    early records and processes 14.. in order, and never commits past an unprocessed offset."""
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.anchor("p0", 14)
    assert feed(ledger, [46]) == [K]
    assert ledger.next_offset("p0") == 14
    assert set(feed(ledger, list(range(47, 192)))) == {S}
    assert ledger.commit_offset("p0") == 14
    # Faust's own re-fetch from 14, then ours from 14 again: the second copy is skipped.
    assert feed(ledger, list(range(14, 200))) == [P] * (200 - 14)
    assert set(feed(ledger, list(range(14, 200)))) == {S}
    assert feed(ledger, [200]) == [P]
    for offset in range(14, 201):
        ledger.settle("p0", offset)
    assert ledger.commit_offset("p0") == 201
    assert ledger.holes_refetched == 1 and ledger.holes_skipped == 0


def test_a_hole_that_fresh_fetches_confirm_is_passed_over() -> None:
    """Offsets with no record (transaction markers, compaction) come back as the same hole
    after every seek; after CONFIRMING_SEEKS seeks they are skipped and count as settled."""
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.anchor("p0", 0)
    assert feed(ledger, [0, 1]) == [P, P]
    verdicts = feed(ledger, [3])  # no record at 2
    for _ in range(CONFIRMING_SEEKS - 1):
        verdicts += feed(ledger, [4, 3])  # a record fetched before the seek, then the restart
    assert verdicts == [K] + [S, K] * (CONFIRMING_SEEKS - 1)
    assert feed(ledger, [4, 3, 4]) == [S, P, P]
    for offset in (0, 1, 3, 4):
        ledger.settle("p0", offset)
    assert ledger.commit_offset("p0") == 5
    assert ledger.holes_skipped == 1


def test_a_hole_filled_by_the_refetch_is_not_passed_over() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.anchor("p0", 0)
    assert feed(ledger, [0, 5, 6, 1, 2, 3, 4, 5, 6]) == [P, K, S, P, P, P, P, P, P]
    assert ledger.holes_skipped == 0


def test_a_seek_back_to_committed_mid_life_keeps_what_was_settled() -> None:
    """Faust seeks to the committed offsets again when it fetched while paused: records
    already processed come again and are processed again (at-least-once); settled ones stay
    committable."""
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.anchor("p0", 0)
    feed(ledger, [0, 1, 2, 3])
    ledger.settle("p0", 0)
    ledger.settle("p0", 2)
    ledger.anchor("p0", 0)
    assert feed(ledger, [0, 1, 2, 3]) == [P, P, P, P]
    assert ledger.commit_offset("p0") == 1
    ledger.settle("p0", 1)
    assert ledger.commit_offset("p0") == 3


def test_partitions_are_independent_and_revoked_ones_forgotten() -> None:
    ledger: OffsetLedger[str] = OffsetLedger()
    ledger.anchor("p0", 0)
    ledger.anchor("p1", 7)
    assert feed(ledger, [0], "p0") == [P]
    assert feed(ledger, [8], "p1") == [K]
    ledger.retain({"p0"})
    assert ledger.partitions() == ["p0"]
    assert ledger.commit_offset("p1") is None


def test_records_before_the_anchor_are_skipped_then_fetched_again() -> None:
    """Faust resumes fetching while it restores tables, before its seek to the committed
    offsets: those records are skipped, and the first one after the anchor that is past it
    asks for a seek back (the partition had no commit: the anchor is the log's start)."""
    ledger: OffsetLedger[str] = OffsetLedger()
    assert feed(ledger, [0, 1, 2]) == [S, S, S]
    ledger.anchor("p0", 0)
    assert feed(ledger, [3, 0, 1, 2, 3]) == [K, P, P, P, P]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_with_records_waiting_that_delivers_nothing_is_fetched_again() -> None:
    """The stall seen after a SIGKILL: anchored at 29 with records up to 47 on the broker and
    nothing delivered. A delivering partition, or one with nothing waiting, is never named."""
    clock = Clock()
    ledger: OffsetLedger[str] = OffsetLedger(clock)
    for tp in ("stuck", "slow", "done"):
        ledger.anchor(tp, 29)
    ends = {"stuck": 48, "slow": 48, "done": 29}
    for second in range(1, 5):
        clock.now = float(second)
        feed(ledger, [28 + second], "slow")  # behind, but delivering
        assert ledger.stalled(ends, 5.0) == {}
    clock.now = 5.0
    assert ledger.stalled(ends, 5.0) == {"stuck": 29}
    assert ledger.stalled(ends, 5.0) == {}, "the next check waits a quiet period again"
    feed(ledger, [29, 30], "stuck")  # the fetch again delivers
    clock.now = 20.0
    assert ledger.stalled(ends, 5.0) == {"stuck": 31, "slow": 33}
    assert ledger.stalls_refetched == 3


def test_a_stall_at_the_same_end_is_fetched_again_a_bounded_number_of_times() -> None:
    """A log ending in transaction markers has an end past the last record: after
    STALL_REFETCHES tries the partition waits for the end to move."""
    clock = Clock()
    ledger: OffsetLedger[str] = OffsetLedger(clock)
    ledger.anchor("p0", 10)
    named = 0
    for second in range(0, 100, 5):
        clock.now = float(second)
        named += len(ledger.stalled({"p0": 11}, 5.0))
    assert named == STALL_REFETCHES
    clock.now += 5.0
    assert ledger.stalled({"p0": 12}, 5.0) == {"p0": 10}, "a new end is a new stall"


def test_nothing_counts_as_stalled_while_nothing_can_be_delivered() -> None:
    clock = Clock()
    ledger: OffsetLedger[str] = OffsetLedger(clock)
    ledger.anchor("p0", 0)
    clock.now = 30.0  # tables restoring: the worker marks every partition heard
    ledger.hear_all()
    clock.now = 34.0
    assert ledger.stalled({"p0": 5}, 5.0) == {}
