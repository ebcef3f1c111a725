"""Benchmark: simulated users' reactions per second in one process, learned users vs world users.

A *reaction* is one simulated user taking in one slate: the slate's items looked up in the
catalogue, the behaviour model's click / buy / leave probabilities, the user's decisions (click,
buy, leave, organic browse, come back), the hit-rate ground truth, the figures and the follow-up
events put on the schedule. The benchmark drives the simulator's own `SessionEngine.answered`
(what the runner calls for every consumer poll of answers) with batches of answered requests,
no Kafka, so it measures the reaction path alone:

* `model`: users from the trained user generator reacting through the LSTM behaviour model
  (`population.source: model`, one onnxruntime call per batch), on models trained on
  MovieLens (`--model-dir`, or the benchmarks' full-preset model, trained once into the cache
  by `benchlib.movielens_model`);
* `world`: the synthetic world's users and its true click model (`population.source: world`),
  measured in the same run as the baseline.

    .venv/bin/python scripts/bench_reactions.py
    .venv/bin/python scripts/bench_reactions.py --model-dir artifacts/movielens --batch 64

The result is printed and written as JSON to `benchmarks/results/` like the other benchmarks'
(`benchlib.write_result`; `--out FILE` writes it there instead): `headline` has both rates,
their ratio and whether the 10,000 reactions/s target was met.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    load_average,
    machine,
    movielens_model,
    now_iso,
    write_result,
)

from recloop.core.contract import Recommendation, ScoredItem, StageTimes
from recloop.simulator.pacing import RunClock
from recloop.simulator.population import Shard, build_population
from recloop.simulator.requests import Pending, Source
from recloop.simulator.scenario import Scenario, scenario_from_dict
from recloop.simulator.sessions import SessionEngine

TARGET_PER_S = 10_000
"""The issue's target for learned users (LSTM behaviour model), reactions per second."""
SLATE = 10


def scenario(source: str, users: int, model_dir: Path, behaviour: str) -> Scenario:
    """A scenario whose population is `source`'s users (the stages are never run)."""
    population: dict[str, object] = {"size": users, "source": source}
    if source == "model":
        population.update(model_dir=str(model_dir), behaviour=behaviour)
    return scenario_from_dict(
        {
            "name": f"bench-reactions-{source}",
            "seed": 1,
            "stages": [{"kind": "constant", "rate": 1, "duration": 1}],
            "population": population,
        }
    )


def no_send(*_: object) -> float:
    """The engine's `emit`: follow-up events are scheduled, but nothing is sent."""
    return time.monotonic()


def answers(engine: SessionEngine, seed: int) -> list[Recommendation]:
    """One answer per user: a slate of random catalogue items (the same for every source)."""
    rng = np.random.default_rng(seed)
    pop = engine.pop
    ids = pop.item_ids
    times = StageTimes(event=time.time())
    out = []
    for user in engine.users:
        items = rng.choice(np.arange(pop.first_item, len(ids)), SLATE, replace=False)
        out.append(
            Recommendation(
                request_id=f"r-{user.row}",
                user_id=user.user_id,
                event_id=f"e-{user.row}",
                items=[ScoredItem(ids[i], 1.0 / (k + 1)) for k, i in enumerate(items)],
                model_version="bench",
                strategy="random",
                times=times,
            )
        )
    return out


def measure(sc: Scenario, batch: int, seconds: float) -> dict[str, float]:
    """Reactions per second of `SessionEngine.answered` in batches of `batch` answered users."""
    population = build_population(sc.population, sc.user, sc.seed, Shard())
    source = Source.bind("sim", "bench", n_items=len(population[0].item_ids))
    clock = RunClock()
    engine = SessionEngine(sc, Shard(), "bench", source, clock, no_send, population)
    clock.start()
    recs = answers(engine, sc.seed)
    n = len(engine.users)
    reactions, busy, started = 0, 0.0, time.perf_counter()
    cursor = 0
    while time.perf_counter() - started < seconds or reactions < 2 * batch:
        rows = [(cursor + k) % n for k in range(batch)]
        cursor = (cursor + batch) % n
        pairs = []
        for row in rows:
            user = engine.users[row]
            if not user.active:
                user.start_session("bench")
                engine.active += 1
            user.waiting = recs[row].event_id
            pending = Pending(source, row, time.monotonic(), time.monotonic(), True)
            pairs.append((recs[row], pending))
        t = time.perf_counter()
        engine.answered(pairs, time.monotonic())
        busy += time.perf_counter() - t
        reactions += batch
        engine.schedule.heap.clear()  # follow-ups are never sent here
    return {
        "reactions": reactions,
        "seconds": busy,
        "reactions_per_s": reactions / busy,
        "us_per_reaction": busy / reactions * 1e6,
        "items": len(engine.pop.item_ids),
        "users": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="models trained on a real log (default: the benchmarks' MovieLens full preset)",
    )
    parser.add_argument("--behaviour", choices=("lstm", "lm"), default="lstm")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument(
        "--batch", type=int, default=256, help="answered users per call (one consumer poll)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per source")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args()
    model_dir = args.model_dir or movielens_model()
    started, load_before = time.perf_counter(), load_average()
    world = measure(scenario("world", args.users, model_dir, "lstm"), args.batch, args.seconds)
    model = measure(
        scenario("model", args.users, model_dir, args.behaviour), args.batch, args.seconds
    )
    from recloop.models.runtime import ModelDir

    card = ModelDir(model_dir).card
    ratio = model["reactions_per_s"] / world["reactions_per_s"]
    result = {
        "date": now_iso(),
        "seconds": round(time.perf_counter() - started, 1),
        "description": "simulated users' reactions per second in one process "
        "(SessionEngine.answered, no Kafka): learned users through the behaviour model beside "
        "the synthetic world's users through its true click model, in the same run",
        "options": {
            "model_dir": str(model_dir),
            "behaviour": args.behaviour,
            "users": args.users,
            "batch": args.batch,
            "slate": SLATE,
            "seconds_per_source": args.seconds,
        },
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine": machine(),
        "headline": {
            "reactions_learned_users_per_s": model["reactions_per_s"],
            "reactions_world_users_per_s": world["reactions_per_s"],
            "reactions_learned_vs_world": ratio,
            "target_reactions_per_s": TARGET_PER_S,
            "target_met": model["reactions_per_s"] >= TARGET_PER_S,
        },
        "benchmarks": {
            "reactions": {
                "behaviour": args.behaviour,
                "batch": args.batch,
                "model_version": card.version,
                "trained_on": card.data_source,
                "learned_users": model,
                "world_users": world,
                "ratio_to_world": ratio,
                "target_per_s": TARGET_PER_S,
            }
        },
    }
    for name, f in ((f"learned users ({args.behaviour})", model), ("world users", world)):
        print(
            f"{name:24s} {f['reactions_per_s']:>10,.0f} reactions/s "
            f"({f['us_per_reaction']:.1f} µs each, {f['items']} items, batch {args.batch})"
        )
    verdict = "met" if result["headline"]["target_met"] else "NOT met"  # type: ignore[index]
    print(
        f"learned / world: {ratio:.2f}; target {TARGET_PER_S:,}/s {verdict}; "
        f"load average {load_before[0]:.1f} -> {result['load_average_after'][0]:.1f}"  # type: ignore[index]
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        out = args.out
    else:
        out = write_result(result)
    print(f"result: {out}")


if __name__ == "__main__":
    main()
