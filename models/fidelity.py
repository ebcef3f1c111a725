"""Fidelity report: do simulated users learned from a log behave like the log's real users?

On the chronological hold-out of the data a model directory was trained on (the latest 20 % of
behaviour slates, as in training):

* **prediction**: each behaviour model's click, buy-given-click and leave predictions on the
  held-out slates (AUC, accuracy, precision, recall, F1 at 0.5, log loss, calibration error),
  beside the popularity-only baseline fitted on the same training slates;
* **distributions**: users sampled from the trained user generator, reacting through a
  behaviour model to a recommender's slates (in-process, no broker), against the held-out real
  users: session length, time between events, events per user, item popularity by rank, action
  mix and purchases per session, each as a Jensen-Shannon divergence (base 2) with its noise
  floor (the divergence between two random halves of the real users).

Both sides are compared as *interactions*: a run of one user's events on one item in one
session counts once, bought if it holds a purchase (or a rating >= 4), as in training.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recloop.core.contract import EventType
from recloop.models.data.examples import (
    BehaviourExamples,
    PopularityRates,
    behaviour_examples,
    interaction_runs,
)
from recloop.models.data.preprocess import (
    deduplicate,
    k_core,
    leave_last_out,
    left_pad,
    sessionise,
    user_sequences,
)
from recloop.models.data.schema import EVENT_CODE, EmptyDataError, EventLog
from recloop.models.metrics import (
    classification_metrics,
    js_divergence,
    js_of_samples,
    kendall_tau,
    ranking_metrics,
    spearman,
)
from recloop.models.runtime import (
    BehaviourRuntime,
    CooccurrenceRecommender,
    ModelDir,
    PopularRecommender,
    RecommenderRuntime,
    UserGeneratorRuntime,
)
from recloop.models.runtime.behaviour import ACTION_BUY, ACTION_CLICK, ACTION_PAD
from recloop.models.runtime.recommender import Recommender
from recloop.models.runtime.vocab import OOV

HOLDOUT_FRACTION = 0.2
"""The latest fifth of the behaviour slates, as `train_all` holds out."""
DISTRIBUTIONS = (
    "session_length",
    "seconds_between_events",
    "events_per_user",
    "item_popularity_by_rank",
    "action_mix",
    "purchases_per_session",
)
RECOMMENDERS = ("transformer", "popular", "cooccurrence", "random")
CLICK, PURCHASE = EVENT_CODE[EventType.CLICK], EVENT_CODE[EventType.PURCHASE]


@dataclass(slots=True)
class HoldOut:
    """What the report compares against: held-out slates and held-out real interactions."""

    train: BehaviourExamples
    test: BehaviourExamples
    real: EventLog
    """Held-out interactions: one `click` per interaction, plus a `purchase` if it was bought."""


def interactions(log: EventLog, buy_rating: float = 4.0) -> EventLog:
    """Collapse a sessionised log into interactions (see the module docstring)."""
    log = log.item_events().sorted()
    if not len(log):
        raise EmptyDataError("the log has no item events")
    starts, bought, _ = interaction_runs(log, log.item, buy_rating)
    ends = np.append(starts[1:], len(log)) - 1
    rows = np.concatenate([starts, ends[bought]])
    types = np.concatenate(
        [np.full(len(starts), CLICK, np.uint8), np.full(int(bought.sum()), PURCHASE, np.uint8)]
    )
    out = log.take(rows)
    out.event_type = types
    return out.sorted()


def hold_out(data: EventLog, md: ModelDir) -> HoldOut:
    """Rebuild the model's training hold-out from the data it was trained on."""
    cfg = md.card.training_config
    b = cfg["behaviour"]
    assert isinstance(b, dict)
    log = sessionise(
        k_core(deduplicate(data), int(cfg["min_user_events"]), int(cfg["min_item_events"])),  # type: ignore[arg-type]
        float(cfg["session_gap_seconds"]),  # type: ignore[arg-type]
    )
    examples = behaviour_examples(
        data,
        log,
        md.items,
        int(cfg["history_length"]),  # type: ignore[arg-type]
        int(b["slate_size"]),
        int(cfg["seed"]),  # type: ignore[arg-type]
        int(b["max_examples"]),
    )
    train, test = examples.split_by_time(HOLDOUT_FRACTION)
    if not len(test):
        raise EmptyDataError("the hold-out has no slates; use a larger data set")
    cut = float(test.time.min())
    return HoldOut(train, test, interactions(log.take(log.time >= cut)))


def prediction_metrics(md: ModelDir, held: HoldOut) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {action: metrics}} for both behaviour models and the popularity baseline."""
    test = held.test
    clicked = test.click > 0.5
    predictions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for kind in ("lstm", "lm"):
        out = BehaviourRuntime.load(md, kind).react_all(
            test.history, test.slate, test.actions if kind == "lm" else None
        )
        predictions[kind] = (out.p_click, out.p_buy, out.p_leave)
    popularity = (
        PopularityRates.load(md.file("behaviour_popularity"))
        if "behaviour_popularity" in md.card.files
        else PopularityRates.fit(held.train, len(md.items))
    )
    predictions["popularity"] = popularity.react(test.slate)
    return {
        name: {
            "click": classification_metrics(test.click, p_click),
            "buy_given_click": classification_metrics(test.buy[clicked], p_buy[clicked]),
            "leave": classification_metrics(test.leave, p_leave),
        }
        for name, (p_click, p_buy, p_leave) in predictions.items()
    }


class RandomRecommender:
    """Uniformly random unseen items: the floor of the ranking comparison."""

    def __init__(self, n_items: int, seed: int) -> None:
        self.n_items, self.rng = n_items, np.random.default_rng(seed)

    def recommend(
        self, histories: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        keys = self.rng.random((len(histories), self.n_items))
        keys[:, : OOV + 1] = -1.0
        if exclude_seen:
            keys[np.arange(len(histories))[:, None], histories] = -1.0
        top = np.argsort(-keys, axis=1)[:, :k]
        return top.astype(np.int64), np.take_along_axis(keys, top, 1).astype(np.float32)


def load_recommender(md: ModelDir, name: str, seed: int = 0) -> Recommender:
    """One of `RECOMMENDERS` from the model directory."""
    if name == "transformer":
        return RecommenderRuntime.load(md)
    if name == "popular":
        return PopularRecommender.load(md)
    if name == "cooccurrence":
        return CooccurrenceRecommender.load(md)
    if name == "random":
        return RandomRecommender(len(md.items), seed)
    raise ValueError(f"unknown recommender {name!r}; use one of {RECOMMENDERS}")


@dataclass(slots=True)
class SimulationConfig:
    """How the in-process users behave (mirrors the simulator's user, without Kafka)."""

    users: int = 500
    behaviour: str = "lstm"
    recommender: str = "transformer"
    slate_size: int = 10
    max_steps: int = 50
    """Slates per session at most."""
    empty_slates_to_leave: int = 3
    """A user leaves after this many slates in a row with nothing clicked."""
    start_time: float = 1_700_000_000.0
    seed: int = 0


@dataclass(slots=True)
class Simulated:
    """What `simulate` produced: the interactions and how many slates were shown."""

    log: EventLog
    slates: int
    clicks: int

    @property
    def ctr(self) -> float:
        """Clicks per slate shown (at most one click per slate)."""
        return self.clicks / max(self.slates, 1)


def simulate(md: ModelDir, config: SimulationConfig) -> Simulated:
    """Interactions of users sampled from the generator, reacting through a behaviour model.

    Each user has max(1, round(sessions per day)) sessions, hours apart (one active day, the
    typical span of a real user). In a session the user is shown a slate, clicks the first
    slot whose click draw succeeds, buys it with p_buy, and after a click leaves with p_leave
    or when the clicks reach the session's length (geometric around the user's mean); steps
    are exponential around the user's mean seconds apart.
    """
    rng = np.random.default_rng(config.seed)
    users = UserGeneratorRuntime.load(md).sample(config.users, config.seed)
    behaviour = BehaviourRuntime.load(md, config.behaviour)
    recommender = load_recommender(md, config.recommender, config.seed)
    n = len(users)
    history = users.seed_history.copy()
    actions = np.where(history > 0, ACTION_CLICK, ACTION_PAD).astype(np.int64)
    sessions = np.maximum(1, np.rint(users.sessions_per_day)).astype(int)
    mean_length = np.maximum(1.0, users.session_length.astype(np.float64))
    gap = users.inter_arrival_seconds.astype(np.float64)
    clock = config.start_time + rng.uniform(0, 86_400, n)
    cols: dict[str, list] = {k: [] for k in ("user", "item", "type", "time", "session")}
    shown = 0
    for s in range(int(sessions.max())):
        alive = sessions > s
        # Each session's length is geometric around the user's mean: real lengths are skewed.
        length = rng.geometric(1.0 / mean_length)
        clicks = np.zeros(n, int)
        empty = np.zeros(n, int)
        for _ in range(config.max_steps):
            rows = np.flatnonzero(alive)
            if not len(rows):
                break
            slates, _ = recommender.recommend(history[rows], config.slate_size, True)
            shown += len(rows)
            out = behaviour.react(
                history[rows], slates, actions[rows] if config.behaviour == "lm" else None
            )
            clock[rows] += rng.exponential(gap[rows])
            hit = rng.random(out.p_click.shape) < out.p_click
            any_hit = hit.any(axis=1)
            slot = hit.argmax(axis=1)
            empty[rows] = np.where(any_hit, 0, empty[rows] + 1)
            for j in np.flatnonzero(any_hit):
                u, item = rows[j], int(slates[j, slot[j]])
                bought = rng.random() < out.p_buy[j, slot[j]]
                session = f"sim{u}#{s}"
                for etype, at in ((CLICK, clock[u]), (PURCHASE, clock[u] + 1.0))[: 1 + bought]:
                    cols["user"].append(f"sim{u}")
                    cols["item"].append(md.items.decode(np.asarray([item]))[0])
                    cols["type"].append(etype)
                    cols["time"].append(at)
                    cols["session"].append(session)
                history[u] = np.append(history[u, 1:], item)
                actions[u] = np.append(actions[u, 1:], ACTION_BUY if bought else ACTION_CLICK)
                clicks[u] += 1
            leave = any_hit & (rng.random(len(rows)) < out.p_leave)
            leave |= clicks[rows] >= length[rows]
            leave |= empty[rows] >= config.empty_slates_to_leave
            alive[rows[leave]] = False
        # The next session hours later: always past the 30-minute session gap.
        clock += 3_600 + rng.exponential(6 * 3_600, n)
    if not cols["user"]:
        raise EmptyDataError("the simulated users clicked nothing")
    log = EventLog.from_columns(
        cols["user"],
        cols["item"],
        cols["type"],
        cols["time"],
        session=cols["session"],
        source=f"fidelity:{md.version}",
    ).sorted()
    return Simulated(log, shown, int((log.event_type == CLICK).sum()))


def ranking_agreement(data: EventLog, md: ModelDir, config: SimulationConfig) -> dict[str, object]:
    """Do the simulated users rank recommenders as offline NDCG@10 does?

    Every recommender in `RECOMMENDERS` is shown to the same simulated users (same seed); its
    online CTR (clicks per slate) is compared with its NDCG@10 on each user's last item
    (leave-last-out, seen items excluded) by Spearman and Kendall rank correlation.
    """
    cfg = md.card.training_config
    log = sessionise(
        k_core(deduplicate(data), int(cfg["min_user_events"]), int(cfg["min_item_events"])),  # type: ignore[arg-type]
        float(cfg["session_gap_seconds"]),  # type: ignore[arg-type]
    )
    split = leave_last_out(user_sequences(log, md.items))
    histories = left_pad(split.test_histories(), md.card.history_length)
    ndcg, ctr = {}, {}
    for name in RECOMMENDERS:
        rec = load_recommender(md, name, config.seed)
        top = np.concatenate(
            [rec.recommend(histories[i : i + 256], 10)[0] for i in range(0, len(histories), 256)]
        )
        ndcg[name] = ranking_metrics(top, split.test_target, ks=(10,))["ndcg@10"]
        run = dataclasses.replace(config, recommender=name)
        ctr[name] = simulate(md, run).ctr
    names = list(RECOMMENDERS)
    a, b = np.asarray([ndcg[n] for n in names]), np.asarray([ctr[n] for n in names])
    return {
        "offline_ndcg@10": ndcg,
        "simulated_ctr": ctr,
        "spearman": spearman(a, b),
        "kendall_tau": kendall_tau(a, b),
    }


def distributions(log: EventLog) -> dict[str, np.ndarray]:
    """The compared quantities of an interaction log (see `DISTRIBUTIONS`)."""
    is_click = log.event_type == CLICK
    clicks, purchases = log.take(is_click), log.take(log.event_type == PURCHASE)
    sessions, per_session = np.unique(clicks.session, return_counts=True)
    bought = dict(zip(*np.unique(purchases.session, return_counts=True), strict=True))
    same = np.zeros(len(clicks), bool)
    same[1:] = clicks.session[1:] == clicks.session[:-1]
    gaps = np.diff(clicks.time)[same[1:]]
    _, per_user = np.unique(clicks.user, return_counts=True)
    _, per_item = np.unique(clicks.item, return_counts=True)
    conversions = np.asarray([bought.get(s, 0) for s in sessions])
    return {
        "session_length": per_session.astype(np.float64),
        "seconds_between_events": np.maximum(gaps, 1.0),
        "events_per_user": per_user.astype(np.float64),
        "item_popularity_by_rank": np.sort(per_item)[::-1].astype(np.float64),
        "action_mix": np.asarray([len(clicks) - len(purchases), len(purchases)], np.float64),
        "purchases_per_session": np.bincount(np.minimum(conversions, 5), minlength=6).astype(
            np.float64
        ),
    }


def divergences(real: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, float]:
    """JS divergence (base 2) per distribution: samples on 20 log bins over the real range,
    rank-frequency and count vectors as they are (padded to the same length)."""
    out = {}
    for name in DISTRIBUTIONS:
        a, b = real[name], other[name]
        if name in ("session_length", "seconds_between_events", "events_per_user"):
            out[name] = js_of_samples(a, b) if len(a) and len(b) else float("nan")
        else:
            size = max(len(a), len(b))
            out[name] = js_divergence(np.pad(a, (0, size - len(a))), np.pad(b, (0, size - len(b))))
    return out


def noise_floor(real: EventLog, seed: int = 0) -> dict[str, float]:
    """JS divergence between two random halves of the real users: what sampling alone gives."""
    users = np.unique(real.user)
    half = np.random.default_rng(seed).permutation(len(users))[: len(users) // 2]
    first = np.isin(real.user, users[half])
    return divergences(distributions(real.take(first)), distributions(real.take(~first)))


def summarise(d: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Side-by-side figures: mean and quantiles of the samples, counts and rates of the rest."""
    out: dict[str, dict[str, float]] = {}
    for name in ("session_length", "seconds_between_events", "events_per_user"):
        v = d[name]
        q = np.quantile(v, [0.5, 0.9]) if len(v) else [math.nan, math.nan]
        out[name] = {"n": float(len(v)), "mean": float(v.mean()) if len(v) else math.nan}
        out[name].update(p50=float(q[0]), p90=float(q[1]))
    pop = d["item_popularity_by_rank"]
    out["item_popularity_by_rank"] = {
        "items": float(len(pop)),
        "mean": float(pop.mean()),
        "top10_share": float(pop[:10].sum() / max(pop.sum(), 1.0)),
    }
    interactions, purchases = d["action_mix"].sum(), d["action_mix"][1]
    out["action_mix"] = {"mean": float(purchases / max(interactions, 1.0))}
    per_session = d["purchases_per_session"]
    out["purchases_per_session"] = {
        "mean": float((per_session * np.arange(len(per_session))).sum() / per_session.sum()),
        "share_with_purchase": float(per_session[1:].sum() / per_session.sum()),
    }
    return out


@dataclass(slots=True)
class FidelityReport:
    """Everything `recloop fidelity` writes (as JSON, and as HTML by `to_html`)."""

    model_version: str
    data_source: str
    held_out_slates: int
    held_out_users: int
    simulated_users: int
    simulation: dict[str, object]
    prediction: dict[str, dict[str, dict[str, float]]]
    js: dict[str, float]
    noise_floor: dict[str, float]
    real: dict[str, dict[str, float]]
    simulated: dict[str, dict[str, float]]
    ranking: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {k: getattr(self, k) for k in self.__dataclass_fields__}, indent=2, default=float
        )

    def to_html(self) -> str:
        return _html(self)


def fidelity_report(
    data: EventLog, md: ModelDir, config: SimulationConfig, rankings: bool = True
) -> FidelityReport:
    """Prediction metrics and simulated-vs-real distributions on the hold-out of `data`, and
    (if `rankings`) the recommender ranking agreement."""
    held = hold_out(data, md)
    real = distributions(held.real)
    sim = distributions(simulate(md, config).log)
    real_users = len(np.unique(held.real.user))
    return FidelityReport(
        model_version=md.version,
        data_source=data.source,
        held_out_slates=len(held.test),
        held_out_users=real_users,
        simulated_users=config.users,
        simulation={k: getattr(config, k) for k in config.__dataclass_fields__},
        prediction=prediction_metrics(md, held),
        js=divergences(real, sim),
        noise_floor=noise_floor(held.real, config.seed),
        real=summarise(real),
        simulated=summarise(sim),
        ranking=ranking_agreement(data, md, config) if rankings else {},
        notes=[
            "Prediction metrics: held-out slates (latest 20 %); precision/recall/F1/accuracy at "
            "a 0.5 threshold. Logs without impressions use sampled impressions (the real item "
            "plus popularity-sampled negatives), so click AUC measures ranking the real item "
            "above the negatives.",
            "Means: action_mix is the share of interactions bought; purchases_per_session "
            "counts 5 or more as 5. "
            "Distributions: interactions (a run of one user's events on one item in a session "
            "counts once; bought if it holds a purchase or a rating >= 4). Simulated users: "
            f"{config.users} from the user generator, behaviour model {config.behaviour!r}, "
            f"slates from {config.recommender!r}, one active day each.",
            "The noise floor is the divergence between two random halves of the real held-out "
            "users: a simulated figure near it is as close as the data can tell.",
        ],
    )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(r: FidelityReport) -> str:
    metric_names = ["auc", "accuracy", "precision", "recall", "f1", "log_loss", "calibration_error"]
    prediction = []
    for action in ("click", "buy_given_click", "leave"):
        for model, by_action in r.prediction.items():
            m = by_action[action]
            prediction.append([action, model, *(m[k] for k in metric_names), m["base_rate"]])
    dist = [
        [
            name,
            r.js[name],
            r.noise_floor[name],
            r.real.get(name, {}).get("mean", float("nan")),
            r.simulated.get(name, {}).get("mean", float("nan")),
        ]
        for name in DISTRIBUTIONS
    ]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in r.notes)
    ranking = ""
    if r.ranking:
        ndcg = r.ranking["offline_ndcg@10"]
        ctr = r.ranking["simulated_ctr"]
        assert isinstance(ndcg, dict) and isinstance(ctr, dict)
        rows: list[list[object]] = [[n, ndcg[n], ctr[n]] for n in ndcg]
        ranking = (
            "<h2>Recommender ranking: offline vs simulated users</h2>"
            + _table(["recommender", "offline NDCG@10", "simulated CTR"], rows)
            + f"<p>Spearman {_fmt(r.ranking['spearman'])}, "
            f"Kendall tau {_fmt(r.ranking['kendall_tau'])}.</p>"
        )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>RecLoop fidelity {html.escape(r.model_version)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,td:nth-child(2)
{{text-align:left}}</style></head><body>
<h1>Fidelity of simulated users</h1>
<p>Model {html.escape(r.model_version)} on {html.escape(r.data_source)}: {r.held_out_slates}
held-out slates, {r.held_out_users} held-out real users, {r.simulated_users} simulated users.</p>
<h2>Per-action prediction (held-out slates)</h2>
{_table(["action", "model", *metric_names, "base rate"], prediction)}
<h2>Simulated vs held-out real (Jensen-Shannon divergence, base 2)</h2>
{_table(["distribution", "JS simulated vs real", "noise floor", "real mean", "simulated mean"], dist)}
{ranking}
<ul>{notes}</ul></body></html>
"""


def write_report(report: FidelityReport, out_dir: str | Path) -> tuple[Path, Path]:
    """`fidelity.json` and `fidelity.html` in `out_dir` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fidelity.json").write_text(report.to_json())
    (out / "fidelity.html").write_text(report.to_html())
    return out / "fidelity.json", out / "fidelity.html"
