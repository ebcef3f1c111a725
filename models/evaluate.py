"""Offline evaluation through the onnxruntime runtime, baselines always beside the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.models.data.examples import BehaviourExamples, PopularityRates
from recloop.models.data.preprocess import LeaveLastOut, UserSequences, left_pad
from recloop.models.metrics import auc, calibration_error, js_of_samples, log_loss, ranking_metrics
from recloop.models.runtime import (
    BehaviourRuntime,
    CooccurrenceRecommender,
    ModelDir,
    PopularRecommender,
    RecommenderRuntime,
    UserGeneratorRuntime,
)
from recloop.models.runtime.recommender import Recommender


@dataclass(slots=True)
class HeldOut:
    """What evaluation needs: the leave-last-out split, behaviour test slates, real users."""

    split: LeaveLastOut
    behaviour_test: BehaviourExamples
    sequences: UserSequences
    real_stats: np.ndarray
    """[users, 4]: sessions/day, events/session, seconds between events, session seconds."""


def evaluate_recommenders(
    md: ModelDir, split: LeaveLastOut, k_max: int = 20
) -> dict[str, dict[str, float]]:
    """Next-item metrics on each user's last item, for the transformer and both baselines."""
    recs: dict[str, Recommender] = {
        "transformer": RecommenderRuntime.load(md),
        "popular": PopularRecommender.load(md),
        "cooccurrence": CooccurrenceRecommender.load(md),
    }
    histories = left_pad(split.test_histories(), md.card.history_length)
    out = {}
    for name, rec in recs.items():
        tops = [
            rec.recommend(histories[i : i + 256], k_max)[0] for i in range(0, len(histories), 256)
        ]
        out[f"recommender/{name}"] = ranking_metrics(np.concatenate(tops), split.test_target)
    return out


def evaluate_behaviour(md: ModelDir, test: BehaviourExamples) -> dict[str, dict[str, float]]:
    """AUC, log loss and calibration error of click, buy-given-click and leave on held-out slates."""
    out = {}
    for kind in ("lstm", "lm"):
        scored = BehaviourRuntime.load(md, kind).react_all(
            test.history, test.slate, test.actions if kind == "lm" else None
        )
        p_click, p_buy, p_leave = scored.p_click, scored.p_buy, scored.p_leave
        clicked = test.click > 0.5
        out[f"behaviour/{kind}"] = {
            "click_auc": auc(test.click, p_click),
            "click_log_loss": log_loss(test.click, p_click),
            "click_ece": calibration_error(test.click, p_click),
            "buy_auc": auc(test.buy[clicked], p_buy[clicked]),
            "buy_log_loss": log_loss(test.buy[clicked], p_buy[clicked]),
            "leave_auc": auc(test.leave, p_leave),
            "leave_log_loss": log_loss(test.leave, p_leave),
            "slates": float(len(test)),
        }
    # Floors: a constant click rate (AUC 0.5), and popularity only (each item's click and buy
    # rates on the same training slates: what a model that ignores the user can reach).
    out["behaviour/constant"] = {
        "click_auc": 0.5,
        "click_log_loss": log_loss(test.click, np.full(test.click.shape, test.click.mean())),
    }
    if "behaviour_popularity" in md.card.files:
        p_click, p_buy, _ = PopularityRates.load(md.file("behaviour_popularity")).react(test.slate)
        out["behaviour/popularity"] = {
            "click_auc": auc(test.click, p_click),
            "click_log_loss": log_loss(test.click, p_click),
            "buy_auc": auc(test.buy[clicked], p_buy[clicked]),
        }
    return out


def evaluate_generator(
    md: ModelDir, held: HeldOut, n: int = 2000, seed: int = 1
) -> dict[str, dict[str, float]]:
    """JS divergence (base 2) between generated and real user distributions."""
    gen = UserGeneratorRuntime.load(md).sample(n, seed)
    real = held.real_stats
    popularity = np.bincount(np.concatenate(held.sequences.items), minlength=len(md.items))[2:]
    generated_pop = np.bincount(gen.seed_history[gen.seed_history > 1], minlength=len(md.items))[2:]
    from recloop.models.metrics import js_divergence

    return {
        "generator": {
            "js_session_length": js_of_samples(real[:, 1], gen.session_length),
            "js_inter_arrival": js_of_samples(real[:, 2], gen.inter_arrival_seconds),
            "js_sessions_per_day": js_of_samples(real[:, 0], gen.sessions_per_day),
            "js_patience": js_of_samples(real[:, 3], gen.patience_seconds),
            "js_item_popularity": js_divergence(popularity, generated_pop),
            "users_generated": float(n),
        }
    }


def evaluate_all(md: ModelDir, held: HeldOut) -> dict[str, dict[str, float]]:
    """Every offline metric for a model directory."""
    metrics = evaluate_recommenders(md, held.split)
    metrics.update(evaluate_behaviour(md, held.behaviour_test))
    metrics.update(evaluate_generator(md, held))
    return metrics


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """Plain-text table, one block per model group."""
    lines = []
    for name, values in metrics.items():
        shown = ", ".join(f"{k}={v:.4f}" for k, v in values.items())
        lines.append(f"{name:28s} {shown}")
    return "\n".join(lines)
