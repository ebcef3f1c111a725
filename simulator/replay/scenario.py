"""A scenario's `replay:` section as a `ReplaySource` for the simulation runner.

Loads the recording or event log, applies the selection, clones and loops, prefixes user ids
and keeps this process's shard of the users (a stable hash of the user id, so the processes of
a sharded run split replayed users as they split simulated ones).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from recloop.simulator.population import Shard
from recloop.simulator.replay.amplify import Selection
from recloop.simulator.replay.recording import RecordingError
from recloop.simulator.replay.replayer import Options, Plan, ReplaySource, make_plan
from recloop.simulator.replay.sources import ReplayInputError, Row, load_source
from recloop.simulator.scenario import ReplaySpec, ScenarioError


def user_shard(user: str, count: int) -> int:
    """The shard (0..count-1) a replayed user belongs to; stable across runs and processes."""
    if count <= 1:
        return 0
    digest = hashlib.blake2b(user.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(slots=True)
class ScenarioReplay:
    """The replay part of one simulator process: its schedule and the users it replays."""

    source: ReplaySource
    users: frozenset[str]
    start: float
    """Seconds into the run of the first replayed event."""
    skipped: int
    """Input rows skipped as unusable (see `recloop replay --dry-run` for the reasons)."""

    @property
    def plan(self) -> Plan:
        return self.source.plan


def load_scenario_replay(
    spec: ReplaySpec, shard: Shard = Shard(), run_id: str = ""
) -> ScenarioReplay:
    """Build the replay of `spec` for `shard`; `ScenarioError` names `replay.path` on bad input."""
    try:
        loaded = load_source(spec.path, limit=spec.limit)
    except (ReplayInputError, RecordingError, OSError) as exc:
        raise ScenarioError(f"replay.path: cannot load {spec.path!r}: {exc}") from None
    rows = [r for r in loaded.rows if r.event is not None]
    if spec.user_prefix:
        rows = [_prefixed(r, spec.user_prefix) for r in rows]
    rows = [r for r in rows if user_shard(r.user, shard.count) == shard.index]
    try:
        selection = Selection(
            users=frozenset(spec.user_prefix + u for u in spec.users) if spec.users else None,
            sample=spec.sample,
            seed=spec.sample_seed,
            event_types=frozenset(spec.event_types) if spec.event_types else None,
        )
        plan = make_plan(
            rows,
            selection=selection,
            copies=spec.clones,
            clone_shift=spec.clone_shift,
            speed=spec.speed,
            max_gap=spec.max_gap,
        )
    except ValueError as exc:
        raise ScenarioError(f"replay: {exc}") from None
    if not plan.rows and shard.count == 1:
        raise ScenarioError(
            f"replay: the selection keeps no events of {loaded.source} "
            "(check replay.users, replay.sample and replay.event_types)"
        )
    options = Options(topic="", loops=spec.loops, run_id=run_id)
    return ScenarioReplay(
        source=ReplaySource(plan, options),
        users=frozenset(r.user for r in plan.rows),
        start=spec.start,
        skipped=loaded.skipped_total,
    )


def _prefixed(row: Row, prefix: str) -> Row:
    assert row.event is not None
    user = prefix + row.event.user_id
    event = msgspec.structs.replace(row.event, user_id=user)
    return Row(row.time, user.encode(), event, None, row.headers, row.origin)
