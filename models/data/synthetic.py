"""A synthetic world with known ground truth, for tests and for the simulator.

Users and items have latent preference vectors; items belong to categories (their vectors sit
around a category centre) and have Zipf-skewed popularity. Each user has sessions; in each step
a logging policy shows a slate, the user clicks items with probability

    sigmoid(affinity * <u, v_i> + popularity_i + position_bias[p] - fatigue * step + bias)

buys a clicked item with `sigmoid(affinity * <u, v_i> + buy_bias)`, and leaves after the step with a
probability that grows with fatigue and falls with how good the best item on the slate was.
Because the click model is known, tests can check that learnt models recover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recloop.core.contract import EventType
from recloop.models.data.schema import EVENT_CODE, EventLog, Exposure


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(slots=True)
class WorldParams:
    """Knobs of the generative process (defaults give a learnable but noisy world)."""

    dim: int = 8
    n_categories: int = 12
    slate_size: int = 10
    sessions_per_user: float = 4.0
    max_steps: int = 12
    affinity: float = 4.0
    click_bias: float = -2.5
    popularity_weight: float = 0.6
    zipf: float = 1.1
    fatigue: float = 0.12
    buy_bias: float = -5.9
    """Buy-given-click logit offset. -5.9 makes ~2.2 % of clicks end in a purchase, the
    funnel of Taobao UserBehavior (2,015,839 buys / 89,716,264 page views = 2.25 %);
    RetailRocket's events.csv has 22,457 transactions / 2,664,312 views = 0.84 %. It was
    -1.0, which bought 63 % of clicked items."""
    leave_bias: float = -2.2
    leave_quality: float = 1.5
    explore: float = 0.5
    """Fraction of each slate drawn by popularity rather than uniformly."""
    start_time: float = 1_700_000_000.0


def reaction_probabilities(
    p: WorldParams,
    affinity: np.ndarray,
    popularity: np.ndarray,
    position_bias: np.ndarray,
    step: np.ndarray | int,
    best: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The world's true click, buy-given-click and leave probabilities: its one reaction model.

    `affinity` (<u, v_i>) and `popularity` are [..., S] over the slate, `position_bias` [S];
    `step` and `best` (the best affinity on the slate) are [...] or scalars. The generator, the
    ground-truth checks and the simulator's world behaviour all use it, so they cannot drift.
    """
    step = np.asarray(step)
    click_logit = (
        p.affinity * affinity
        + p.popularity_weight * popularity
        + position_bias
        - p.fatigue * step[..., None]
        + p.click_bias
    )
    buy_logit = p.affinity * affinity + p.buy_bias
    leave_logit = p.leave_bias + p.fatigue * 4 * step - p.leave_quality * np.asarray(best)
    return _sigmoid(click_logit), _sigmoid(buy_logit), _sigmoid(leave_logit)


@dataclass(slots=True)
class SyntheticWorld:
    """Ground truth plus the generated log (canonical events + exposures)."""

    params: WorldParams
    user_ids: list[str]
    item_ids: list[str]
    user_vectors: np.ndarray
    item_vectors: np.ndarray
    item_category: np.ndarray
    popularity: np.ndarray
    """Log-popularity score per item (higher: more likely to be shown and clicked)."""
    position_bias: np.ndarray
    log: EventLog

    @classmethod
    def generate(
        cls,
        n_users: int = 500,
        n_items: int = 300,
        seed: int = 0,
        params: WorldParams | None = None,
        *,
        users: int | None = None,
        items: int | None = None,
    ) -> SyntheticWorld:
        """Generate a world; same arguments and seed give the same world."""
        p = params or WorldParams()
        n_users = users or n_users
        n_items = items or n_items
        if n_users < 1 or n_items < p.slate_size:
            raise ValueError(f"need at least 1 user and {p.slate_size} items")
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(p.n_categories, p.dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        category = rng.integers(0, p.n_categories, n_items)
        items_v = centres[category] + 0.35 * rng.normal(size=(n_items, p.dim))
        items_v /= np.linalg.norm(items_v, axis=1, keepdims=True)
        # Users like one or two categories: a mix of centres plus noise.
        favourite = rng.integers(0, p.n_categories, (n_users, 2))
        mix = rng.uniform(0.5, 1.0, (n_users, 1))
        users_v = mix * centres[favourite[:, 0]] + (1 - mix) * centres[favourite[:, 1]]
        users_v += 0.25 * rng.normal(size=users_v.shape)
        users_v /= np.linalg.norm(users_v, axis=1, keepdims=True)
        rank = rng.permutation(n_items) + 1
        pop_prob = rank.astype(float) ** -p.zipf
        pop_prob /= pop_prob.sum()
        popularity = np.log(pop_prob * n_items)
        log_pop = np.log(pop_prob)
        position_bias = -0.15 * np.arange(p.slate_size)
        activity = rng.lognormal(0.0, 0.6, n_users)
        user_ids = [f"u{i}" for i in range(n_users)]
        item_ids = [f"i{i}" for i in range(n_items)]

        cols: dict[str, list] = {k: [] for k in ("user", "item", "type", "time", "session")}
        exposures: list[Exposure] = []

        def emit(user: str, item: str, etype: EventType, t: float, session: str) -> None:
            cols["user"].append(user)
            cols["item"].append(item)
            cols["type"].append(EVENT_CODE[etype])
            cols["time"].append(t)
            cols["session"].append(session)

        for u in range(n_users):
            n_sessions = max(1, rng.poisson(p.sessions_per_user * activity[u]))
            t = p.start_time + rng.uniform(0, 86_400)
            gap = rng.lognormal(np.log(20.0), 0.4)  # this user's typical seconds between steps
            for s in range(n_sessions):
                session = f"{user_ids[u]}#{s}"
                emit(user_ids[u], "", EventType.SESSION_START, t, session)
                for step in range(p.max_steps):
                    n_pop = round(p.explore * p.slate_size)
                    # Gumbel top-k: sampling without replacement, much faster than rng.choice(p=).
                    gumbel = log_pop + rng.gumbel(size=n_items)
                    pop_part = np.argpartition(-gumbel, n_pop)[:n_pop]
                    uniform = rng.random(n_items)
                    uniform[pop_part] = 2.0
                    rest = np.argpartition(uniform, p.slate_size - n_pop)[: p.slate_size - n_pop]
                    slate = np.concatenate([pop_part, rest])
                    rng.shuffle(slate)
                    affinity = items_v[slate] @ users_v[u]
                    p_click, p_buy, p_leave = reaction_probabilities(
                        p, affinity, popularity[slate], position_bias, step, affinity.max()
                    )
                    clicked = rng.random(p.slate_size) < p_click
                    bought = clicked & (rng.random(p.slate_size) < p_buy)
                    left = bool(rng.random() < p_leave) or step == p.max_steps - 1
                    exposures.append(
                        Exposure(
                            user_id=user_ids[u],
                            session_id=session,
                            time=t,
                            slate=[item_ids[i] for i in slate],
                            clicked=clicked.tolist(),
                            bought=bought.tolist(),
                            left=left,
                        )
                    )
                    for pos, i in enumerate(slate):
                        if not clicked[pos]:
                            continue
                        t += rng.exponential(gap)
                        emit(user_ids[u], item_ids[i], EventType.CLICK, t, session)
                        if bought[pos]:
                            t += rng.exponential(gap)
                            emit(user_ids[u], item_ids[i], EventType.PURCHASE, t, session)
                    t += rng.exponential(gap)
                    if left:
                        emit(user_ids[u], "", EventType.LEAVE, t, session)
                        break
                # Next session after hours to days (active users come back sooner).
                t += rng.exponential(86_400 / activity[u])

        log = EventLog.from_columns(
            cols["user"],
            cols["item"],
            cols["type"],
            cols["time"],
            session=cols["session"],
            source=f"synthetic:users={n_users},items={n_items},seed={seed}",
        )
        log.exposures = exposures
        return cls(
            params=p,
            user_ids=user_ids,
            item_ids=item_ids,
            user_vectors=users_v.astype(np.float32),
            item_vectors=items_v.astype(np.float32),
            item_category=category,
            popularity=popularity.astype(np.float32),
            position_bias=position_bias.astype(np.float32),
            log=log,
        )

    def click_probability(self, user: int, slate: np.ndarray, step: int = 0) -> np.ndarray:
        """Ground-truth click probabilities for a slate of item indices (no randomness)."""
        affinity = self.item_vectors[slate] @ self.user_vectors[user]
        p_click, _, _ = reaction_probabilities(
            self.params,
            affinity,
            self.popularity[slate],
            self.position_bias[: len(slate)],
            step,
            affinity.max(),
        )
        return p_click

    def best_items(self, user: int, k: int) -> np.ndarray:
        """The k items this user is most likely to click (ground truth for hit-rate checks)."""
        scores = (
            self.params.affinity * (self.item_vectors @ self.user_vectors[user])
            + self.params.popularity_weight * self.popularity
        )
        return np.argsort(-scores, kind="stable")[:k]


LAYOUTS = ("movielens", "taobao", "retailrocket")
"""Public log layouts `write_layout` can write (the loaders in `loaders.py` read them back)."""


def write_layout(
    world: SyntheticWorld, kind: str, directory: str | Path, seed: int = 0, churn: bool = False
) -> str:
    """Write the world's log in a public layout and return the `kind:path` spec that loads it.

    Such logs have no impressions, so exposures are dropped; what each layout records:

    * movielens: one rating per (user, item) clicked; 4.5-5 if bought, else 0.5-4.
    * taobao (no header): each click is a `pv`, 10 % of clicks also a `fav`, a purchase is
      `cart` then `buy`; like the real log it is view-heavy (a clicked item is viewed 1-3 times).
    * retailrocket (ms timestamps): each click is 1-3 `view`s, a purchase `addtocart` then
      `transaction` with a transaction id.

    `churn` turns the catalogue over half-way through the log, as shops replace products: from
    the median event time on, every item is a new product (its id plus the catalogue size).
    """
    if kind not in LAYOUTS:
        raise ValueError(f"unknown layout {kind!r}; use one of {LAYOUTS}")
    rng = np.random.default_rng(seed)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    log = world.log
    click, buy = EVENT_CODE[EventType.CLICK], EVENT_CODE[EventType.PURCHASE]
    category = {item: int(c) for item, c in zip(world.item_ids, world.item_category, strict=True)}
    rows: list[tuple[str, str, str, float]] = []  # (user, item, action, time)
    seen: set[tuple[str, str]] = set()
    for user, item, code, t in zip(log.user, log.item, log.event_type, log.time, strict=True):
        if code == click:
            repeats = 1 if kind == "movielens" else int(rng.integers(1, 4))
            rows += [(user, item, "click", t + k * rng.uniform(2, 30)) for k in range(repeats)]
            if kind == "taobao" and rng.random() < 0.1:
                rows.append((user, item, "fav", t + 1.0))
        elif code == buy:
            rows += [(user, item, "cart", t), (user, item, "buy", t + rng.uniform(5, 120))]
    rows.sort(key=lambda r: (r[3], r[0], r[1]))
    uid = {u: u.lstrip("u") for u in world.user_ids}
    iid = {i: i.lstrip("i") for i in world.item_ids}
    if churn:
        middle = rows[len(rows) // 2][3]
        n = len(world.item_ids)
        renamed = {i: str(int(iid[i]) + n) for i in world.item_ids}
        category.update({renamed[i]: category[i] for i in world.item_ids})
        iid.update({renamed[i]: renamed[i] for i in world.item_ids})
        rows = [(u, renamed[i] if t >= middle else i, a, t) for u, i, a, t in rows]
    if kind == "movielens":
        bought = {(u, i) for u, i, a, _ in rows if a == "buy"}
        lines = ["userId,movieId,rating,timestamp"]
        for u, i, a, t in rows:
            if a != "click" or (u, i) in seen:
                continue
            seen.add((u, i))
            rating = rng.choice([4.5, 5.0]) if (u, i) in bought else rng.choice(np.arange(1, 9) / 2)
            lines.append(f"{uid[u]},{iid[i]},{rating:.1f},{int(t)}")
        (out / "ratings.csv").write_text("\n".join(lines) + "\n")
        return f"movielens:{out}"
    if kind == "taobao":
        names = {"click": "pv", "fav": "fav", "cart": "cart", "buy": "buy"}
        lines = [f"{uid[u]},{iid[i]},{category[i]},{names[a]},{int(t)}" for u, i, a, t in rows]
        path = out / "UserBehavior.csv"
        path.write_text("\n".join(lines) + "\n")
        return f"taobao:{path}"
    names = {"click": "view", "cart": "addtocart", "buy": "transaction"}
    lines = ["timestamp,visitorid,event,itemid,transactionid"]
    for n, (u, i, a, t) in enumerate(rows):
        transaction = str(n) if a == "buy" else ""
        lines.append(f"{int(t * 1000)},{uid[u]},{names[a]},{iid[i]},{transaction}")
    (out / "events.csv").write_text("\n".join(lines) + "\n")
    return f"retailrocket:{out}"
