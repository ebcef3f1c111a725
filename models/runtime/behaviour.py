"""The simulated user's brain: per-item click / buy-after-click and session-leave probabilities.

Two ONNX architectures behind one interface: `lstm` (Embedding + LSTM + sigmoid heads) and `lm`
(a decoder-only transformer over (item, action) tokens that can also generate sessions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from recloop.models.runtime.card import ModelDir, ModelLoadError
from recloop.models.runtime.session import as_histories, open_session
from recloop.models.runtime.vocab import OOV

ACTION_PAD, ACTION_CLICK, ACTION_BUY, ACTION_QUERY, ACTION_FAVOURITE = 0, 1, 2, 3, 4
"""Action tokens of the behaviour LM. QUERY marks a candidate whose action is being predicted;
FAVOURITE (appended after it, so older models keep their codes) a history item the user
favourited without buying."""
N_ACTIONS = ACTION_FAVOURITE + 1


@dataclass(frozen=True, slots=True)
class BehaviourOutput:
    """Per-slate-item click probability, purchase-given-click probability, and leave probability."""

    p_click: np.ndarray
    p_buy: np.ndarray
    p_leave: np.ndarray


@dataclass(frozen=True, slots=True)
class GeneratedSession:
    """One generated session: item indices and actions (ACTION_CLICK or ACTION_BUY) in order."""

    items: np.ndarray
    actions: np.ndarray


class BehaviourRuntime:
    """Runs a behaviour model; `kind` is "lstm" or "lm"."""

    def __init__(self, model_dir: ModelDir, kind: str = "lstm", threads: int | None = None) -> None:
        if kind not in ("lstm", "lm"):
            raise ValueError(f"kind must be 'lstm' or 'lm', got {kind!r}")
        self.kind = kind
        self.model_dir = model_dir
        self.version = model_dir.version
        entry = model_dir.model(f"behaviour_{kind}")
        self.session: ort.InferenceSession = open_session(model_dir.path, entry, threads)
        self.history_length = int(entry.config.get("history_length", model_dir.card.history_length))
        self.max_slate = int(entry.config.get("max_slate", 32))
        self._outputs: dict[str, str] = {
            role: str(entry.config.get(f"{role}_output", role))
            for role in ("p_click", "p_buy", "p_leave", "next_item_logits")
        }
        names = {o.name for o in self.session.get_outputs()}
        needed = ["p_click", "p_buy", "p_leave"] + (["next_item_logits"] if kind == "lm" else [])
        for role in needed:
            if self._outputs[role] not in names:
                raise ModelLoadError(
                    f"{model_dir.path}: behaviour_{kind} output for {role} "
                    f"({self._outputs[role]!r}) not in graph outputs {sorted(names)}"
                )

    @classmethod
    def load(
        cls, model_dir: str | Path | ModelDir, kind: str = "lstm", threads: int | None = None
    ) -> BehaviourRuntime:
        md = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
        return cls(md, kind, threads)

    def _feed(self, h: np.ndarray, slates: np.ndarray, actions: np.ndarray | None) -> dict:
        feed = {"history": h, "slate": slates}
        if self.kind == "lm":
            if actions is None:
                actions = np.where(h > 0, ACTION_CLICK, ACTION_PAD).astype(np.int64)
            else:
                actions = np.asarray(actions, dtype=np.int64)[:, -h.shape[1] :]
            feed["history_actions"] = np.ascontiguousarray(actions)
        return feed

    def react_all(
        self,
        histories: np.ndarray,
        slates: np.ndarray,
        actions: np.ndarray | None = None,
        chunk: int = 512,
    ) -> BehaviourOutput:
        """`react` over any number of rows, `chunk` rows per onnxruntime call (bounded memory)."""
        parts = [
            self.react(
                histories[i : i + chunk],
                slates[i : i + chunk],
                None if actions is None else actions[i : i + chunk],
            )
            for i in range(0, len(histories), chunk)
        ]
        return BehaviourOutput(
            np.concatenate([p.p_click for p in parts]),
            np.concatenate([p.p_buy for p in parts]),
            np.concatenate([p.p_leave for p in parts]),
        )

    def react(
        self, histories: np.ndarray, slates: np.ndarray, actions: np.ndarray | None = None
    ) -> BehaviourOutput:
        """Probabilities for each slate item (slot order = position) given each history row.

        `actions` (LM only) gives each history item's action (1 click, 2 buy, 4 favourite;
        default click).
        """
        h = as_histories(histories, self.history_length)
        s = np.ascontiguousarray(np.asarray(slates, dtype=np.int64))
        if s.ndim != 2 or s.shape[0] != h.shape[0]:
            raise ValueError(f"slates must be [batch={h.shape[0]}, slate], got {s.shape}")
        if not 1 <= s.shape[1] <= self.max_slate:
            raise ValueError(f"slate size must be in [1, {self.max_slate}], got {s.shape[1]}")
        names = [self._outputs["p_click"], self._outputs["p_buy"], self._outputs["p_leave"]]
        p_click, p_buy, p_leave = self.session.run(names, self._feed(h, s, actions))
        return BehaviourOutput(
            p_click.astype(np.float32),
            p_buy.astype(np.float32),
            p_leave.reshape(-1).astype(np.float32),
        )

    def next_item_logits(
        self, histories: np.ndarray, actions: np.ndarray | None = None
    ) -> np.ndarray:
        """LM only: [B, V] logits of the next item the user interacts with."""
        if self.kind != "lm":
            raise TypeError("next_item_logits needs the behaviour LM (kind='lm')")
        h = as_histories(histories, self.history_length)
        dummy = np.full((h.shape[0], 1), OOV, dtype=np.int64)
        (logits,) = self.session.run(
            [self._outputs["next_item_logits"]], self._feed(h, dummy, actions)
        )
        return logits

    def generate_session(
        self,
        histories: np.ndarray,
        max_steps: int = 20,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 50,
    ) -> list[GeneratedSession]:
        """LM only: sample whole sessions autoregressively for each history row.

        Each step samples the next item from the LM (top-k, temperature), then buy-vs-click from
        the action head, then whether the user leaves; sampling uses a numpy RNG seeded by `seed`.
        """
        if self.kind != "lm":
            raise TypeError("generate_session needs the behaviour LM (kind='lm')")
        rng = np.random.default_rng(seed)
        h = as_histories(histories, self.history_length).copy()
        a = np.where(h > 0, ACTION_CLICK, ACTION_PAD).astype(np.int64)
        b = h.shape[0]
        alive = np.ones(b, dtype=bool)
        items: list[list[int]] = [[] for _ in range(b)]
        acts: list[list[int]] = [[] for _ in range(b)]
        for _ in range(max_steps):
            logits = self.next_item_logits(h, a).astype(np.float64)
            logits[:, : OOV + 1] = -np.inf
            k = min(top_k, logits.shape[1] - 2)
            cand = np.argpartition(-logits, k - 1, axis=1)[:, :k]
            cl = np.take_along_axis(logits, cand, axis=1) / max(temperature, 1e-6)
            prob = np.exp(cl - cl.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
            pick = (prob.cumsum(axis=1) < rng.random((b, 1))).sum(axis=1).clip(0, k - 1)
            nxt = cand[np.arange(b), pick]
            out = self.react(h, nxt[:, None], a)
            action = np.where(rng.random(b) < out.p_buy[:, 0], ACTION_BUY, ACTION_CLICK)
            for row in np.flatnonzero(alive):
                items[row].append(int(nxt[row]))
                acts[row].append(int(action[row]))
            h = np.concatenate([h[:, 1:], nxt[:, None]], axis=1)
            a = np.concatenate([a[:, 1:], action[:, None]], axis=1)
            after = self.react(h, nxt[:, None], a).p_leave
            alive &= rng.random(b) >= after
            if not alive.any():
                break
        return [
            GeneratedSession(np.asarray(i, np.int64), np.asarray(x, np.int64))
            for i, x in zip(items, acts, strict=True)
        ]
