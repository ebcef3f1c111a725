"""The simulated population: who the users are, what they like, and this process's share.

Users come from a synthetic world's ground truth (`source: world`) or from the trained user
generator (`source: model`). The whole population is built from the scenario seed, then
`--shard i/n` keeps users whose index is `i` modulo `n`, so several processes split one run
without overlap and each user behaves the same whichever process simulates it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recloop.core.errors import InvalidInputError
from recloop.simulator.scenario import PopulationSpec, UserSpec


class PopulationError(InvalidInputError):
    """The population could not be built (e.g. no trained model where the scenario says)."""


@dataclass(frozen=True, slots=True)
class Shard:
    """This process's share of the user id space: users with index % count == index."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse `i/n` (0-based i)."""
        try:
            i, n = (int(p) for p in text.split("/"))
        except ValueError:
            raise ValueError(f"shard {text!r}: write it as i/n, e.g. 0/2 and 1/2") from None
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"shard {text!r}: need 0 <= i < n")
        return cls(i, n)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(slots=True)
class Population:
    """Per-user arrays (rows = this shard's users) and the item catalogue they react to."""

    user_ids: list[str]
    global_index: np.ndarray
    preference: np.ndarray
    """[n, d] latent preferences (drift moves them between sessions)."""
    seed_history: np.ndarray
    """[n, L] item indices each user starts with (0 = padding)."""
    patience: np.ndarray
    think_time: np.ndarray
    session_length: np.ndarray
    item_ids: list[str]
    item_vectors: np.ndarray
    """[V, d] item vectors in the preference space (row = item index)."""
    item_popularity: np.ndarray
    """[V] probability of each item under the catalogue's popularity (for novelty)."""
    first_item: int
    """Index of the first real item (padding / OOV rows come before it in model vocabularies)."""
    source: str
    version: str

    def __len__(self) -> int:
        return len(self.user_ids)

    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids) if i >= self.first_item}


def _per_user(rng: np.random.Generator, n: int, mean: float, sigma: float = 0.4) -> np.ndarray:
    """Log-normal per-user values with the given mean (spread keeps users different)."""
    if mean <= 0:
        return np.zeros(n, np.float32)
    return (mean * rng.lognormal(-sigma * sigma / 2, sigma, n)).astype(np.float32)


def build_population(
    spec: PopulationSpec, user: UserSpec, seed: int, shard: Shard = Shard()
) -> tuple[Population, object]:
    """The shard's users and the reaction ground truth (a SyntheticWorld or a ModelDir)."""
    rng = np.random.default_rng([seed, 7])
    n = spec.size
    if spec.source == "world":
        from recloop.models.data.synthetic import SyntheticWorld

        w = spec.world
        world = SyntheticWorld.generate(w.users, w.items, seed=w.seed)
        rows = np.arange(n) % w.users
        pref = world.user_vectors[rows].astype(np.float32)
        pop = np.exp(world.popularity.astype(np.float64))
        item_ids, item_vectors = world.item_ids, world.item_vectors
        seed_history = np.zeros((n, 1), np.int64)
        session_length = _per_user(rng, n, user.max_steps * 0.6 + 1)
        patience = _per_user(rng, n, user.patience)
        first_item, truth, version = 0, world, f"world:{w.users}x{w.items}:seed={w.seed}"
        user_ids = [world.user_ids[r] if n <= w.users else f"u{g}" for g, r in enumerate(rows)]
    else:
        from recloop.models.runtime import ModelDir, ModelLoadError, UserGeneratorRuntime

        try:
            md = ModelDir(spec.model_dir)
            gen = UserGeneratorRuntime(md, threads=1)
        except (ModelLoadError, FileNotFoundError) as exc:
            raise PopulationError(
                f"population.source=model needs a trained model directory: {exc}"
            ) from None
        users = gen.sample(n, seed)
        pref = users.preference
        item_vectors = gen.item_embeddings
        item_ids = md.items.ids
        pop = np.load(md.file("popularity")).astype(np.float64) + 1.0
        seed_history = users.seed_history
        session_length = users.session_length.astype(np.float32)
        # The generator's patience is learnt from logs; the scenario's value rescales it.
        patience = users.patience_seconds / max(1e-9, float(users.patience_seconds.mean()))
        patience = (patience * user.patience).astype(np.float32)
        first_item, truth, version = 2, md, md.version
        user_ids = [f"u{g}" for g in range(n)]
    pop[:first_item] = 0.0
    think = _per_user(rng, n, user.think_time)
    keep = np.arange(n)[np.arange(n) % shard.count == shard.index]
    return (
        Population(
            user_ids=[user_ids[g] for g in keep],
            global_index=keep,
            preference=np.ascontiguousarray(pref[keep], np.float32),
            seed_history=seed_history[keep],
            patience=patience[keep],
            think_time=think[keep],
            session_length=np.maximum(1.0, session_length[keep]),
            item_ids=list(item_ids),
            item_vectors=np.asarray(item_vectors, np.float32),
            item_popularity=(pop / pop.sum()).astype(np.float64),
            first_item=first_item,
            source=spec.source,
            version=version,
        ),
        truth,
    )
