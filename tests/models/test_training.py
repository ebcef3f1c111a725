"""Trained-model tests (TensorFlow): quality on MovieLens and the synthetic world, ONNX parity,
the TensorFlow-free runtime, atomic swap, CLI. Models are trained once per session (conftest)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from recloop.models.data.preprocess import left_pad
from recloop.models.runtime import (
    BehaviourRuntime,
    ModelDir,
    ModelLoadError,
    RecommenderRuntime,
    UserGeneratorRuntime,
)

# Training MovieLens takes ~2 min on a quiet 2-core machine and several times that under load;
# the session fixture runs inside the first test's timeout.
pytestmark = [pytest.mark.train, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parents[2]
BATCHES = (1, 7, 256)
JS_SESSION_LENGTH_MAX = 0.05
"""Stated bound on the JS divergence (base 2) of generated vs real per-user session length."""


def _inputs(trained, role: str, batch: int, real: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    card = trained.card
    n_items, length = card.vocab_size, card.history_length
    if real:
        hist = left_pad(trained.prep.held.split.test_histories(), length)
        hist = hist[np.arange(batch) % len(hist)]
    else:
        hist = rng.integers(0, n_items, (batch, length)).astype(np.int64)
        hist[: batch // 2, : length // 2] = 0  # some left padding
    if role == "recommender":
        return {"history": hist, "exclude_seen": (rng.random(batch) < 0.5).astype(np.float32)}
    if role == "generator":
        dim = card.models["generator"].inputs[1].shape[1]
        comp = int(card.models["generator"].config["components"])
        return {
            "component": rng.integers(0, comp, batch).astype(np.int64),
            "noise": rng.standard_normal((batch, dim)).astype(np.float32),
        }
    slate = rng.integers(2, n_items, (batch, 10)).astype(np.int64)
    feed = {"history": hist, "slate": slate}
    if role == "behaviour_lm":
        feed["history_actions"] = np.where(hist > 0, rng.integers(1, 3, hist.shape), 0)
    return feed


@pytest.mark.parametrize("real", [True, False], ids=["real", "random"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("role", ["recommender", "behaviour_lstm", "behaviour_lm", "generator"])
def test_onnx_parity(movielens_models, role: str, batch: int, real: bool) -> None:
    import onnxruntime as ort

    model = movielens_models.keep[role]
    feed = _inputs(movielens_models, role, batch, real)
    session = ort.InferenceSession(str(movielens_models.path / f"{role}.onnx"))
    names = [o.name for o in session.get_outputs()]
    onnx_out = dict(zip(names, session.run(None, feed), strict=True))
    keras_out = model([feed[i.name] for i in session.get_inputs()])
    keras_out = keras_out if isinstance(keras_out, list | tuple) else [keras_out]
    for name, expected in zip(names, keras_out, strict=True):
        expected = np.asarray(expected)
        if expected.dtype == np.int64:  # top-k indices: compare the scores they point at instead
            continue
        diff = float(np.abs(onnx_out[name] - expected).max())
        assert diff <= 1e-4, f"{role} {name} batch {batch}: max abs diff {diff}"


def _ndcg(trained) -> tuple[float, float, float]:
    m = trained.card.metrics
    return tuple(
        m[f"recommender/{n}"]["ndcg@10"] for n in ("transformer", "popular", "cooccurrence")
    )


def test_movielens_transformer_beats_popular(movielens_models) -> None:
    t, p, c = _ndcg(movielens_models)
    print(f"\nMovieLens NDCG@10 held-out: transformer={t:.4f} popular={p:.4f} cooccurrence={c:.4f}")
    print(f"trained all models in {movielens_models.seconds:.1f}s (test config)")
    print(json.dumps(movielens_models.card.training_seconds, indent=1))
    assert t > 2 * p


def test_movielens_transformer_beats_cooccurrence(movielens_models) -> None:
    t, _, c = _ndcg(movielens_models)
    print(f"\nMovieLens NDCG@10 held-out: transformer={t:.4f} cooccurrence={c:.4f}")
    assert t > c


def test_behaviour_auc_on_synthetic_exposures(synthetic_models) -> None:
    m = synthetic_models.card.metrics
    lstm, lm = m["behaviour/lstm"]["click_auc"], m["behaviour/lm"]["click_auc"]
    print(f"\nsynthetic held-out click AUC: lstm={lstm:.3f} lm={lm:.3f}")
    assert lstm >= 0.75 and lm >= 0.75
    assert not synthetic_models.card.notes[1:]  # real exposures: no sampled-impressions note


def test_generator_matches_real_distributions(movielens_models, synthetic_models) -> None:
    for name, trained in (("movielens", movielens_models), ("synthetic", synthetic_models)):
        g = trained.card.metrics["generator"]
        print(f"\n{name} generator JS: " + ", ".join(f"{k}={v:.4f}" for k, v in g.items()))
        assert g["js_session_length"] <= JS_SESSION_LENGTH_MAX
    users = UserGeneratorRuntime.load(movielens_models.path).sample(50, seed=3)
    again = UserGeneratorRuntime.load(movielens_models.path).sample(50, seed=3)
    assert np.array_equal(users.preference, again.preference)
    assert users.seed_history.shape == (50, movielens_models.card.history_length)
    assert (users.seed_history[:, -1] > 1).all() and (users.session_length > 0).all()


def test_sampled_impressions_are_declared(movielens_models) -> None:
    assert any("SAMPLED IMPRESSIONS" in n for n in movielens_models.card.notes)


def test_behaviour_runtime_and_generation(synthetic_models) -> None:
    md = ModelDir(synthetic_models.path)
    hist = left_pad(synthetic_models.prep.held.split.test_histories()[:4], md.card.history_length)
    slates = np.tile(np.arange(2, 12), (4, 1))
    for kind in ("lstm", "lm"):
        out = BehaviourRuntime.load(md, kind).react(hist, slates)
        assert out.p_click.shape == (4, 10) and out.p_leave.shape == (4,)
        assert ((out.p_click >= 0) & (out.p_click <= 1)).all()
    lm = BehaviourRuntime.load(md, "lm")
    a = lm.generate_session(hist, max_steps=5, seed=7)
    b = lm.generate_session(hist, max_steps=5, seed=7)
    assert [s.items.tolist() for s in a] == [s.items.tolist() for s in b]
    assert all(1 <= len(s.items) <= 5 and (s.items > 1).all() for s in a)


def test_runtime_runs_without_tensorflow(synthetic_models) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from recloop.models.runtime import *
        md = ModelDir({str(synthetic_models.path)!r})
        h = np.zeros((3, 5), np.int64); h[:, -1] = 2
        for rec in (RecommenderRuntime.load(md), PopularRecommender.load(md),
                    CooccurrenceRecommender.load(md)):
            items, scores = rec.recommend(h, 10)
            assert items.shape == (3, 10), items.shape
        BehaviourRuntime.load(md, "lstm").react(h, h[:, -3:])
        BehaviourRuntime.load(md, "lm").generate_session(h, max_steps=2)
        UserGeneratorRuntime.load(md).sample(5, seed=1)
        bad = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx")]
        assert not bad, bad
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_recommender_runtime_and_atomic_swap(movielens_models, synthetic_models, tmp_path) -> None:
    rt = RecommenderRuntime.load(movielens_models.path)
    hist = left_pad(movielens_models.prep.held.split.test_histories()[:8], 200)
    items, scores = rt.recommend(hist, 10)  # longer than history_length: left-truncated
    assert items.shape == (8, 10) and (items > 1).all()
    for row, h in zip(items, hist[:, -rt.history_length :], strict=True):
        assert not set(row.tolist()) & set(h.tolist())
    assert (np.diff(scores, axis=1) <= 0).all()
    with pytest.raises(ValueError, match="k must be"):
        rt.recommend(hist, 10_000)
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_models.path, broken)
    (broken / "items.json").write_text(json.dumps(["<pad>", "<oov>", "x"]))
    old = rt.version
    with pytest.raises(ModelLoadError, match="does not match the card"):
        rt.swap(broken)
    assert rt.version == old
    assert rt.swap(synthetic_models.path) == synthetic_models.card.version
    assert rt.recommend(np.zeros((2, 3), np.int64), 5)[0].shape == (2, 5)


def test_cli_data_and_evaluate(synthetic_models, movielens_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from recloop.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["data", f"movielens:{movielens_dir}"])
    assert result.exit_code == 0 and '"events": 100836' in result.output
    out = tmp_path / "metrics.json"
    result = runner.invoke(
        app, ["evaluate", "--model-dir", str(synthetic_models.path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "recommender/popular" in result.output and "behaviour/lm" in result.output
    assert json.loads(out.read_text())["behaviour/lstm"]["click_auc"] >= 0.75
    bad = runner.invoke(app, ["data", "movielens:/nonexistent"])
    assert bad.exit_code == 2  # bad input (README, "Exit codes")
