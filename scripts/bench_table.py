"""The README's "Measured figures" benchmark table, generated from benchmarks/results/*.json.

    .venv/bin/python scripts/bench_table.py            # rewrite the README between the markers
    .venv/bin/python scripts/bench_table.py --check    # exit 1 if the README is stale

Each row comes from the newest result file that has its benchmark, and names that file. Ratios
to the same run's baseline come first: absolute rates move with the machine's load.
`tests/test_bench_table.py` checks that the README holds exactly what this script generates.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

Row = tuple[str, str, str, str]
"""(what, ratio to the same-run baseline, measured, target and whether it is met)."""


def newest(results: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Benchmark name -> (file name, the whole result) of the newest file that has it."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in sorted(results.glob("*.json")):  # names start with the UTC time
        result = json.loads(path.read_text())
        for name in result.get("benchmarks", {}):
            out[name] = (path.name, result)
    return out


def n(x: float) -> str:
    """A rate or count with thousands separators."""
    return f"{x:,.0f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def kafka_rows(b: dict[str, Any]) -> list[Row]:
    p, c = b["producer"], b["consumer"]
    return [
        (
            f"broker ceiling: Apache Kafka's `kafka-producer-perf-test` / "
            f"`kafka-consumer-perf-test`, {b['record_size']}-byte records",
            "",
            f"produce {n(p['events_per_s'])} events/s ({p['mb_per_s']:.1f} MB/s), "
            f"consume {n(c['events_per_s'])} events/s",
            "",
        )
    ]


def worker_rows(b: dict[str, Any]) -> list[Row]:
    w, p = b["worker"], b["passthrough"]
    rows: list[Row] = [
        (
            "one worker, MovieLens transformer, sustained (backlog)",
            f"**{b['ratio_to_passthrough']:.1%}** of the passthrough's events/s, "
            f"{b['cpu_ratio_to_passthrough']:.0f}x its CPU per event",
            f"{n(w['events_per_s'])} events/s, {w['cpu_us_per_event']:.0f} µs CPU/event; "
            f"raw aiokafka passthrough {n(p['events_per_s'])} events/s, "
            f"{p['cpu_us_per_event']:.0f} µs",
            f"≥ 25 %, ≤ 100 µs: "
            f"{verdict(b['ratio_to_passthrough'] >= 0.25 and w['cpu_us_per_event'] <= 100)}",
        )
    ]
    rows.extend(baseline_rows(b))
    limits = {"1000": 50.0, "3000": 100.0}
    for rate, lat in w["latency"].items():
        base = p["latency"].get(rate, {})
        worst = max(lat["per_second_p99_ms"] or [float("nan")])
        limit = limits.get(rate)
        rows.append(
            (
                f"one worker at {n(float(rate))} events/s, event → recommendation",
                f"p99 {lat['p99_ms'] / base['p99_ms']:.1f}x the passthrough's"
                if base.get("p99_ms")
                else "",
                f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, worst second's p99 "
                f"{worst:.0f} ms ({lat['answered']}/{lat['triggers_sent']} answered); "
                f"passthrough p50 {base.get('p50_ms', float('nan')):.1f}, "
                f"p99 {base.get('p99_ms', float('nan')):.1f} ms",
                f"p99 ≤ {limit:.0f} ms: {verdict(lat['p99_ms'] <= limit)}" if limit else "",
            )
        )
    if scale := b.get("scale_out"):
        one = scale[0]
        net = "cpu_us_per_event_net_of_idle"
        parts = "; ".join(
            f"{s['workers']}: partitions {'/'.join(map(str, s['partitions_per_worker']))}, "
            f"events {'/'.join(n(e) for e in s['events_per_worker'])}, "
            f"{s['cpu_us_per_event']:.0f} µs/event"
            + (f" ({s[net]:.0f} net of idle polling)" if net in s else "")
            for s in scale
        )
        ratios = ", ".join(
            f"{s['workers']} workers {s['cpu_us_per_event'] / one['cpu_us_per_event']:.2f}x"
            + (f" ({s[net] / one[net]:.2f}x net of idle)" if net in s and one.get(net) else "")
            for s in scale[1:]
        )
        rows.append(
            (
                f"workers in one group, {one['partitions']} partitions, CPU per event",
                f"{ratios} the CPU per event of one",
                parts,
                "even partitions, same CPU per event",
            )
        )
    return rows


NOT_MEASURED = "not measured in this file"

BASELINES = {
    "faust_passthrough": (
        "Faust agent passthrough, stock Faust (floor of Faust's per-message path)",
        "`scripts/faust_passthrough.py`: one agent forwarding each event unchanged, "
        "the worker's Faust settings",
    ),
    "faust_worker_transport": (
        "Faust agent passthrough on the worker's transport (floor of the worker's Faust share)",
        "`scripts/faust_passthrough.py --transport worker`: the same agent on `WorkerApp`, "
        "whose consumer shortens Faust's per-message path; it commits nothing",
    ),
    "worker_random": (
        "worker, random strategy (no inference)",
        "`recloop worker` with `strategy=random`, all else as above",
    ),
}
"""bench_worker's extra baselines: (row title, what ran)."""


STOCK_NOTE = {False: "", True: " (here it does: the rest comes out negative)"}


def baseline_rows(b: dict[str, Any]) -> list[Row]:
    """The Faust passthrough and the random-strategy worker beside the raw passthrough, and the
    worker's CPU per event taken apart with them (older files: "not measured")."""
    p = b["passthrough"]
    rows: list[Row] = []
    for kind, (what, how) in BASELINES.items():
        k = b.get(kind)
        if not k or not k.get("cpu_us_per_event") or f"{kind}_cpu_ratio_to_passthrough" not in b:
            rows.append((what, "", NOT_MEASURED, ""))
            continue
        rows.append(
            (
                what,
                f"{b[f'{kind}_cpu_ratio_to_passthrough']:.1f}x the passthrough's CPU per event, "
                f"{b[f'{kind}_ratio_to_passthrough']:.1%} of its events/s",
                f"{n(k['events_per_s'])} events/s, {k['cpu_us_per_event']:.0f} µs CPU/event "
                f"({how}); raw aiokafka passthrough {p['cpu_us_per_event']:.0f} µs",
                "",
            )
        )
    d = b.get("decomposition", {})
    if {"faust_floor_us_per_event", "pipeline_us_per_event"} <= d.keys():
        w = b["worker"]["cpu_us_per_event"]
        floor, pipeline = d["faust_floor_us_per_event"], d["pipeline_us_per_event"]
        inference = d["inference_us_per_event_net_of_random"]
        if d.get("faust_floor_is_worker_transport"):
            floor_what = "Faust agent passthrough on the worker's transport"
            floor_note = "the floor leaves out the commits, so it is a little low"
        else:
            floor_what = "Faust agent passthrough"
            floor_note = (
                "the passthrough is stock Faust, whose per-message path the worker's transport "
                "shortens (`wait_first` run inline, no ack bookkeeping: `streams/transport.py`), "
                f"so its floor can exceed the worker's own Faust share{STOCK_NOTE[pipeline < 0]}"
            )
        rows.append(
            (
                "one worker's CPU per event taken apart: Faust's floor + our pipeline + inference",
                f"Faust {floor / w:.0%}, pipeline {pipeline / w:.0%}, inference {inference / w:.0%}",
                f"{w:.0f} µs = {floor:.0f} ({floor_what}) {'+' if pipeline >= 0 else '−'} "
                f"{abs(pipeline):.0f} (the rest: "
                f"decode, state, changelog, batching, answers) + {inference:.0f} (transformer); "
                f"{floor_note}; "
                f"worker − worker_random = {d['inference_us_per_event']:.0f} µs, but the random "
                f"strategy costs {d['random_strategy_us_per_event']:.0f} µs/event itself "
                f"(the transformer {d['onnx_strategy_us_per_event']:.0f} µs/event, "
                f"both timed in-process on batches of {b['ranking']['batch']})",
                f"≤ 100 µs: Faust's floor alone is {floor:.0f} µs",
            )
        )
    elif "inference_us_per_event" in d:
        rows.append(
            (
                "inference's share of one worker's CPU per event (worker − worker_random)",
                "",
                f"{d['inference_us_per_event']:.0f} µs/event",
                "",
            )
        )
    return rows


def simulator_rows(b: dict[str, Any]) -> list[Row]:
    raw = b["raw_producer"]
    best = max(
        (r for r in b["ladder"] if r["sustained"]), key=lambda r: r["target_per_s"], default=None
    )
    above = [r for r in b["ladder"] if not r["sustained"]]
    failed = next((r for r in above if not best or r["target_per_s"] > best["target_per_s"]), None)
    lag = f"lag p99 {best['lag_p99_ms']:.1f} ms" if best else "none sustained"
    beyond = (
        f"; {n(failed['target_per_s'])}/s gave lag p99 {failed['lag_p99_ms']:.1f} ms"
        if failed
        else ""
    )
    below = [r for r in above if best and r["target_per_s"] < best["target_per_s"]]
    if below:  # a loaded machine fails a low rate now and then: say so
        beyond += "; missed in the same run at " + ", ".join(
            f"{n(r['target_per_s'])}/s ({r['lag_p99_ms']:.0f} ms)" for r in below
        )
    return [
        (
            "one simulator process, open loop, world users, lag p99 < 5 ms",
            f"**{b['ratio_to_raw']:.1%}** of the raw aiokafka producer",
            f"{n(b['max_sustained_per_s'])} events/s ({lag}{beyond}), "
            f"{b['cpu_us_per_event'] or float('nan'):.0f} µs CPU/event; raw producer "
            f"{n(raw['events_per_s'])} events/s, {raw['cpu_us_per_event']:.0f} µs",
            f"≥ 20,000 events/s: {verdict(b['max_sustained_per_s'] >= 20_000)}",
        )
    ]


def reactions_rows(b: dict[str, Any]) -> list[Row]:
    """`scripts/bench_reactions.py`: learned users' reactions beside world users' (same run)."""
    learned, world = b["learned_users"], b["world_users"]
    return [
        (
            f"one simulator process, reactions to slates: learned users "
            f"({b['behaviour'].upper()} behaviour model, {learned['items']:,} items) vs world users",
            f"**{b['ratio_to_world']:.2f}x** the world users' reactions/s",
            f"{n(learned['reactions_per_s'])} reactions/s, {learned['us_per_reaction']:.0f} µs each "
            f"(batches of {b['batch']}); world users {n(world['reactions_per_s'])} reactions/s, "
            f"{world['us_per_reaction']:.0f} µs",
            f"≥ {n(b['target_per_s'])} reactions/s: "
            f"{verdict(learned['reactions_per_s'] >= b['target_per_s'])}",
        )
    ]


def replay_rows(b: dict[str, Any]) -> list[Row]:
    raw, paced = b["raw_producer"], b["paced_1x"]
    return [
        (
            "replay as fast as possible, recording file → Kafka",
            f"**{b['ratio_to_raw']:.0%}** of the raw aiokafka producer",
            f"{n(b['replay_events_per_s'])} events/s end to end "
            f"({n(b['replay_send_phase_events_per_s'])} send phase), "
            f"{b['cpu_us_per_event']:.0f} µs CPU/event; raw producer "
            f"{n(raw['events_per_s'])} events/s, {raw['cpu_us_per_event']:.0f} µs",
            f"≥ 50,000 events/s: {verdict(b['replay_events_per_s'] >= 50_000)}",
        ),
        (
            "replay at 1x, \\|actual − scheduled\\| send time",
            "",
            f"p50 {paced['lag_p50_ms']:.2f} ms, p99 {paced['lag_p99_ms']:.2f} ms, "
            f"max {paced['lag_max_ms']:.1f} ms, {paced['over_5ms']} of {paced['events']} over 5 ms",
            f"p99 < 5 ms: {verdict(paced['lag_p99_ms'] < 5)}",
        ),
    ]


def inference_rows(b: dict[str, Any]) -> list[Row]:
    """One row per serving variant, each beside the exported model at the same threads."""
    rows: list[Row] = []
    variants = b.get("variants", {})
    for name, v in variants.items():
        base = variants.get(f"exported, {name.rpartition(', ')[2]}", v)
        ratio = "" if base is v else f"{v['median_ms'] / base['median_ms']:.2f}x the time"
        change = "" if base is v else f" ({v['ndcg10_test'] - base['ndcg10_test']:+.4f})"
        target = (
            f"≤ 20 ms: {verdict(v['median_ms'] <= 20)}" if name == "exported, 2 threads" else ""
        )
        rows.append(
            (
                f"inference, batch {b['batch']}, {b['items']:,} items: {name}",
                ratio,
                f"median {v['median_ms']:.1f} ms, p95 {v['p95_ms']:.1f} ms; NDCG@10 valid "
                f"{v['ndcg10_valid']:.4f}, test {v['ndcg10_test']:.4f}{change}",
                target,
            )
        )
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "kafka_perf": kafka_rows,
    "inference": inference_rows,
    "worker": worker_rows,
    "simulator": simulator_rows,
    "reactions": reactions_rows,
    "replay": replay_rows,
}


def render(results: Path = RESULTS) -> str:
    """The generated block (markers included) from the newest result files."""
    found = newest(results)
    lines = [
        START,
        "| what | ratio to the same-run baseline | measured | target | result file |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, rows in ROWS.items():
        if name not in found:
            continue
        file, result = found[name]
        load = "→".join(
            f"{result[k][0]:.1f}" for k in ("load_average_before", "load_average_after")
        )
        where = f"`{file}` (load {load})"
        for what, ratio, measured, target in rows(result["benchmarks"][name]):
            lines.append(f"| {what} | {ratio} | {measured} | {target} | {where} |")
    lines.append(END)
    return "\n".join(lines)


CAP_START, CAP_END = "<!-- capacity:start -->", "<!-- capacity:end -->"


def capacity(results: Path = RESULTS) -> str:
    """The capacity model's figures (markers included), from the newest result files."""
    found = newest(results)
    lines = [CAP_START]
    if "worker" in found:
        file, result = found["worker"]
        w = result["benchmarks"]["worker"]
        us = w["worker"]["cpu_us_per_event"]
        lines.append(
            f"* **Worker**: {us:.0f} µs CPU per event with the MovieLens transformer, so about "
            f"**{n(1e6 / us)} events/s per core** (`{file}`)."
        )
        d = w.get("decomposition", {})
        if {"faust_floor_us_per_event", "pipeline_us_per_event"} <= d.keys():
            floor = d["faust_floor_us_per_event"]
            path = {False: "stock Faust's per-message path", True: "its own Faust transport"}
            lines.append(
                f"* **Faust's floor**: a Faust agent that only forwards each event costs "
                f"{floor:.0f} µs CPU per event, so a worker on "
                f"{path[bool(d.get('faust_floor_is_worker_transport'))]} "
                f"tops out near **{n(1e6 / floor)} events/s per core**; of the worker's "
                f"{us:.0f} µs the transformer takes "
                f"{d['inference_us_per_event_net_of_random']:.0f} µs and the rest "
                f"{us - d['inference_us_per_event_net_of_random']:.0f} µs (`{file}`)."
            )
        if scale := w.get("scale_out"):
            one = scale[0]["cpu_us_per_event"]
            net = "cpu_us_per_event_net_of_idle"
            parts = ", ".join(
                f"{s['workers']} workers {'/'.join(map(str, s['partitions_per_worker']))} "
                f"({s['cpu_us_per_event'] / one:.2f}x the CPU per event of one"
                + (
                    f", {s[net] / scale[0][net]:.2f}x net of idle polling"
                    if net in s and scale[0].get(net)
                    else ""
                )
                + ")"
                for s in scale[1:]
            )
            lines.append(
                f"* **Partitions per worker**: the group splits the partitions evenly "
                f"({scale[0]['partitions']} partitions: {parts}); a group uses at most one "
                f"worker per partition (`{file}`)."
            )
    if "simulator" in found:
        file, result = found["simulator"]
        sim = result["benchmarks"]["simulator"]
        top = sim["ladder"][-1]  # the highest rate tried
        lines.append(
            f"* **Simulator**: one process sustained {n(sim['max_sustained_per_s'])} events/s "
            f"with schedule lag p99 < 5 ms; at {n(top['target_per_s'])} events/s it spent "
            f"{top['cpu_us_per_event']:.0f} µs CPU per event, i.e. about "
            f"{n(1e6 / top['cpu_us_per_event'])} events/s per core of CPU (at lower rates CPU per "
            f"event is higher: the scheduler spins when the next event is less than 0.5 ms "
            f"away; on this shared machine the lag limit comes first) (`{file}`)."
        )
    if "kafka_perf" in found:
        file, result = found["kafka_perf"]
        k = result["benchmarks"]["kafka_perf"]
        lines.append(
            f"* **Broker ceiling** (one Apache Kafka node sharing the 2 cores): "
            f"{n(k['producer']['events_per_s'])} events/s produced and "
            f"{n(k['consumer']['events_per_s'])} consumed by Kafka's own perf tools (`{file}`)."
        )
    lines.extend(example(found, 10_000))
    lines.append(CAP_END)
    return "\n".join(lines)


def example(found: dict[str, tuple[str, dict[str, Any]]], rate: int) -> list[str]:
    """The capacity model applied to `rate` events/s with these results' figures."""
    if not {"worker", "simulator", "kafka_perf"} <= found.keys():
        return []
    worker = found["worker"][1]["benchmarks"]["worker"]["worker"]["cpu_us_per_event"]
    sim = found["simulator"][1]["benchmarks"]["simulator"]["max_sustained_per_s"]
    ceiling = found["kafka_perf"][1]["benchmarks"]["kafka_perf"]["producer"]["events_per_s"]
    workers = math.ceil(rate / (1e6 / worker * 0.7))
    sims = f"{math.ceil(rate / sim)} simulator process(es)" if sim else "simulators: not measured"
    return [
        f"* **Example, {n(rate)} events/s**: {workers} workers on cores of their own, "
        f"{workers}-{2 * workers} partitions, {sims}; the events and the recommendations "
        f"(~half as many) are {(1.5 * rate) / ceiling:.0%} of one such broker's produce ceiling."
    ]


def replace_block(text: str, block: str, start: str = START, end: str = END) -> str:
    """`text` with everything from `start` to `end` replaced by `block`."""
    i, j = text.index(start), text.index(end) + len(end)
    return text[:i] + block + text[j:]


def generated(text: str, results: Path = RESULTS) -> str:
    """`text` (the README) with both generated blocks rewritten from `results`."""
    text = replace_block(text, render(results))
    return replace_block(text, capacity(results), CAP_START, CAP_END)


def update_readme(readme: Path = README, results: Path = RESULTS) -> bool:
    """Rewrite the README's blocks; True if it changed."""
    text = readme.read_text()
    new = generated(text, results)
    if new != text:
        readme.write_text(new)
    return new != text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args()
    if args.check:
        text = README.read_text()
        if generated(text) != text:
            sys.exit("README.md's benchmark table is stale: run scripts/bench_table.py")
        return
    print("README.md rewritten" if update_readme() else "README.md already up to date")


if __name__ == "__main__":
    main()
