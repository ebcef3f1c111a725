"""Scenario files (YAML): load stages, population, user model, timeouts, topics and thresholds.

Validated by pydantic with `extra="forbid"` everywhere, so a typo is an error; `load_scenario`
turns validation errors into one `ScenarioError` that names each bad key and what it allows.
Durations are seconds or strings such as `500ms`, `30s`, `2m`, `1h`. Stage `rate` is new
sessions per second (Poisson arrivals); events per second follow from what users do. An
optional `replay:` section adds recorded users, replayed next to the simulated ones.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from recloop.core.errors import InvalidInputError
from recloop.models.data.loaders import LOG_KINDS
from recloop.simulator.thresholds import Threshold, ThresholdError, parse_threshold


class ScenarioError(InvalidInputError, ValueError):
    """The scenario file is invalid; the message names each bad key and the allowed values."""


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like `250ms`, `30s`, `2m`, `1h`."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration; use seconds or e.g. '500ms', '30s', '2m', '1h'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Rate = Annotated[float, Field(ge=0, le=1_000_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Strict):
    """The same arrival rate for the whole stage."""

    kind: Literal["constant"] = "constant"
    rate: Rate
    duration: PositiveDuration

    def rate_at(self, t: float) -> float:
        return self.rate


class Soak(Constant):
    """A long constant stage (named separately so reports say what the stage was for)."""

    kind: Literal["soak"] = "soak"  # type: ignore[assignment]


class Ramp(_Strict):
    """Linear change of the rate from `start` to `end`."""

    kind: Literal["ramp"] = "ramp"
    start: Rate
    end: Rate
    duration: PositiveDuration

    def rate_at(self, t: float) -> float:
        return self.start + (self.end - self.start) * min(1.0, t / self.duration)


class Step(_Strict):
    """Equal-length steps through `rates`."""

    kind: Literal["step"] = "step"
    rates: list[Rate] = Field(min_length=1)
    duration: PositiveDuration

    def rate_at(self, t: float) -> float:
        i = min(len(self.rates) - 1, int(t / self.duration * len(self.rates)))
        return self.rates[i]


class Spike(_Strict):
    """A base rate with a burst to `peak` from `at` for `width` seconds."""

    kind: Literal["spike"] = "spike"
    rate: Rate
    peak: Rate
    at: Duration = 0.0
    width: PositiveDuration = 5.0
    duration: PositiveDuration

    def rate_at(self, t: float) -> float:
        return self.peak if self.at <= t < self.at + self.width else self.rate


class Diurnal(_Strict):
    """A sinusoidal day compressed into `period`: mean * (1 + amplitude * sin)."""

    kind: Literal["diurnal"] = "diurnal"
    mean: Rate
    amplitude: float = Field(0.5, ge=0, le=1)
    period: PositiveDuration = 60.0
    duration: PositiveDuration

    def rate_at(self, t: float) -> float:
        return self.mean * (1 + self.amplitude * math.sin(2 * math.pi * t / self.period))


Stage = Annotated[Constant | Soak | Ramp | Step | Spike | Diurnal, Field(discriminator="kind")]
STAGE_KINDS = ("constant", "ramp", "step", "spike", "soak", "diurnal")


class WorldSpec(_Strict):
    """A synthetic world (recloop.models.data.synthetic) whose ground truth drives the users."""

    users: int = Field(500, ge=1)
    items: int = Field(300, ge=10)
    seed: int = 0


class PopulationSpec(_Strict):
    """Where users come from and how they react.

    `source: world` takes users from a synthetic world's ground truth (reactions from the true
    click model); `source: model` samples them from the trained user generator in `model_dir`
    and reacts with the behaviour model (`behaviour: lstm` or `lm`).
    """

    size: int = Field(1000, ge=1, le=10_000_000)
    source: Literal["world", "model"] = "world"
    world: WorldSpec = WorldSpec()
    model_dir: Path = Path("artifacts/models")
    behaviour: Literal["lstm", "lm"] = "lstm"
    send_history: bool = True
    """`source: model`: before a learned user's first session, send the items of their past
    (the generator's seed history, which the behaviour model reacts from) as `view` events,
    so the recommender knows the user as a shop knows a returning customer."""


class UserSpec(_Strict):
    """The user model's knobs (per-user values are drawn around these, deterministically)."""

    patience: PositiveDuration = 2.0
    """Mean seconds a user waits for a recommendation before abandoning the session."""
    think_time: Duration = 1.0
    """Mean seconds between seeing a slate and acting on it."""
    organic_share: float = Field(0.1, ge=0, le=1)
    """Share of a user's steps that are organic browsing, not driven by a recommendation."""
    max_steps: int = Field(20, ge=1, le=1000)
    fatigue: float = Field(0.15, ge=0)
    """Added to the leave logit per step of the session."""
    boredom: float = Field(2.0, ge=0)
    """Added to the leave logit times the share of slate items already shown this session."""
    drift: float = Field(0.05, ge=0, le=1)
    """How far preferences move between sessions (interest drift)."""
    return_probability: float = Field(0.5, ge=0, le=1)
    """Base chance a user comes back after leaving; satisfied users return more often."""
    return_after: Duration = 10.0
    """Mean seconds before a returning user starts the next session."""


class TopicSpec(_Strict):
    """Overrides of the topic names from the settings."""

    events: str | None = None
    recommendations: str | None = None


REPLAY_EVENT_TYPES = Literal[
    "session_start", "view", "click", "cart", "purchase", "request", "leave", "favourite"
]


def parse_speed(value: Any) -> float:
    """A replay speed factor from a number or a string like `10x` (finite and > 0)."""
    if isinstance(value, str) and value.strip().lower() in ("max", "afap", "inf"):
        raise ValueError(
            f"{value!r}: a scenario replay runs on the schedule; use a finite factor like 10x"
        )
    if isinstance(value, str):
        try:
            value = float(value.strip().lower().removesuffix("x"))
        except ValueError:
            raise ValueError(f"{value!r} is not a speed; use a factor like 1, 0.5 or 10x") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a speed; use a factor like 1, 0.5 or 10x")
    if not math.isfinite(value):
        raise ValueError("a scenario replay needs a finite speed (as fast as possible is CLI-only)")
    return float(value)


class ReplaySpec(_Strict):
    """Recorded users replayed next to the simulated ones, through the same schedule and sender.

    They follow the recording (no reactions); their answers are matched and timed like the
    simulated users'. Relative paths are relative to the scenario file.
    """

    path: str = Field(min_length=1)
    """A recording file, or an event log `kind:path` (kinds as in `recloop replay`)."""
    speed: Annotated[float, BeforeValidator(parse_speed), Field(gt=0, le=1_000_000)] = 1.0
    max_gap: PositiveDuration | None = None
    """Cap idle gaps of the recording at this many original seconds (before `speed`)."""
    start: Duration = 0.0
    """When the replay starts, in seconds into the run."""
    users: list[str] | None = None
    """Only these recorded users."""
    sample: float = Field(1.0, gt=0, le=1)
    """A deterministic fraction of the recorded users (by a hash of the id and `sample_seed`)."""
    sample_seed: int = 0
    event_types: list[REPLAY_EVENT_TYPES] | None = None
    clones: int = Field(0, ge=0, le=10_000)
    """Extra copies of every recorded user under new ids (`<user>~c<n>`)."""
    clone_shift: Duration = 60.0
    """Original seconds between the copies' start times."""
    loops: int = Field(1, ge=0)
    """Times to replay the recording; 0 repeats it until the run ends."""
    limit: int | None = Field(None, ge=1)
    """Read only the first rows of an external event log."""
    user_prefix: str = ""
    """Prepended to replayed user ids, to keep them apart from simulated users with equal ids."""

    @field_validator("path")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        kind, sep, rest = value.partition(":")
        if sep and re.fullmatch(r"[a-z_]+", kind) and kind not in LOG_KINDS:
            raise ValueError(
                f"unknown source kind {kind!r}; allowed values: {', '.join(LOG_KINDS)} "
                "(as kind:path), or the path of a recording file"
            )
        if sep and kind in LOG_KINDS and not rest:
            raise ValueError(f"{value!r} names no file; use {kind}:PATH")
        return value

    def relative_to(self, base: Path) -> ReplaySpec:
        """This spec with a relative file path taken relative to `base` (the scenario's dir)."""
        kind, sep, rest = self.path.partition(":")
        if sep and kind in LOG_KINDS:
            resolved = f"{kind}:{_under(base, rest)}"
        else:
            resolved = str(_under(base, self.path))
        return self.model_copy(update={"path": resolved})


def _under(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


class Scenario(_Strict):
    """A whole load test."""

    name: str = "scenario"
    seed: int = 0
    stages: list[Stage] = Field(min_length=1)
    population: PopulationSpec = PopulationSpec()
    user: UserSpec = UserSpec()
    recommendation_timeout: PositiveDuration = 5.0
    """Requests unanswered after this long are given up (the user has long gone)."""
    topics: TopicSpec = TopicSpec()
    thresholds: list[str] = []
    abort_on_breach: bool = False
    late_threshold: PositiveDuration = 0.005
    """A send later than this after its intended time is counted as late."""
    replay: ReplaySpec | None = None
    """Recorded users replayed alongside the simulated ones (see `ReplaySpec`)."""

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.stages)

    def rate_at(self, t: float) -> float:
        """Session arrival rate at `t` seconds into the run (0 after the last stage)."""
        for stage in self.stages:
            if t < stage.duration:
                return stage.rate_at(t)
            t -= stage.duration
        return 0.0

    def parsed_thresholds(self) -> list[Threshold]:
        return [parse_threshold(t) for t in self.thresholds]


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names allowed at `loc`'s parent, for "unknown key" messages."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part in current.model_fields:
                current = _model_of(current.model_fields[part].annotation)
            elif part in STAGE_KINDS:
                current = {
                    "constant": Constant,
                    "soak": Soak,
                    "ramp": Ramp,
                    "step": Step,
                    "spike": Spike,
                    "diurnal": Diurnal,
                }[part]
            else:
                return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _model_of(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", ())
    for arg in args:
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def scenario_from_dict(data: Any, origin: str = "scenario") -> Scenario:
    """Validate a parsed scenario, raising `ScenarioError` with one line per problem."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{origin}: expected a mapping of keys, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                allowed = _allowed_keys(Scenario, err["loc"])
                hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
                lines.append(f"  {key}: unknown key{hint}")
            elif err["type"] == "union_tag_invalid":
                lines.append(
                    f"  {key}: unknown stage kind {err['input'].get('kind')!r}; "
                    f"allowed values: {', '.join(STAGE_KINDS)}"
                )
            elif err["type"] == "union_tag_not_found":
                lines.append(f"  {key}.kind: missing; allowed values: {', '.join(STAGE_KINDS)}")
            else:
                lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
        raise ScenarioError(f"{origin} is invalid:\n" + "\n".join(lines)) from None
    for i, text in enumerate(scenario.thresholds):
        try:
            parse_threshold(text)
        except ThresholdError as exc:
            raise ScenarioError(f"{origin} is invalid:\n  thresholds.{i}: {exc}") from None
    return scenario


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """One line naming the file, the line and column, and what the YAML parser expected."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = "; ".join(str(part) for part in (exc.context, exc.problem) if part)
        return f"{path}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {what}"
    if isinstance(exc, yaml.reader.ReaderError):
        return (
            f"{path}, character {exc.position + 1}: not valid YAML: "
            f"unacceptable character {chr(exc.character)!r} ({exc.reason})"
            if isinstance(exc.character, int)
            else f"{path}, character {exc.position + 1}: not valid YAML: {exc.reason}"
        )
    return f"{path}: not valid YAML: {' '.join(str(exc).split())}"


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"{p}: no such scenario file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{p}, byte {exc.start}: not UTF-8 text ({exc.reason}); a scenario is a YAML file"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(_yaml_error(p, exc)) from None
    scenario = scenario_from_dict(data, str(p))
    if scenario.replay is not None:
        replay = scenario.replay.relative_to(p.resolve().parent)
        scenario = scenario.model_copy(update={"replay": replay})
    return scenario


def quick_scenario(rate: float, duration: float, **overrides: Any) -> Scenario:
    """A one-stage constant scenario (for the CLI without a file, demos and tests)."""
    return scenario_from_dict(
        {"stages": [{"kind": "constant", "rate": rate, "duration": duration}], **overrides}
    )
