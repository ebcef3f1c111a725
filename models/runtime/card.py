"""The model card (`card.json`) and loading/validating a model directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from recloop.core.errors import InvalidInputError
from recloop.models.runtime.vocab import Vocabulary

CARD_FILE = "card.json"
ITEMS_FILE = "items.json"
CARD_FORMAT = 1


class ModelLoadError(InvalidInputError):
    """A model directory is missing, incomplete or inconsistent with its card."""


class TensorSpec(msgspec.Struct, frozen=True):
    """Name, element type and shape (None for dynamic axes) of one graph input or output."""

    name: str
    dtype: str
    shape: list[int | str | None]


class ModelEntry(msgspec.Struct, kw_only=True):
    """One exported model in the directory."""

    file: str
    architecture: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    config: dict[str, object] = {}
    sha256: str = ""


class ModelCard(msgspec.Struct, kw_only=True):
    """Everything needed to trust and use a model directory."""

    version: str
    created: str
    format: int = CARD_FORMAT
    data_source: str = ""
    data_fingerprint: str = ""
    vocab_size: int = 0
    vocab_sha256: str = ""
    history_length: int = 50
    embedding_dim: int = 0
    models: dict[str, ModelEntry] = {}
    files: dict[str, str] = {}
    """Other artifacts (baseline data, embeddings) by role -> file name."""
    training_config: dict[str, object] = {}
    training_seconds: dict[str, float] = {}
    metrics: dict[str, dict[str, float]] = {}
    notes: list[str] = []

    def save(self, directory: str | Path) -> None:
        """Write atomically (temp file then rename) so readers never see half a card."""
        path = Path(directory) / CARD_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(self)))
        os.replace(tmp, path)


class ModelDir:
    """A loaded model directory: the card and the item vocabulary, validated against each other."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        card_path = self.path / CARD_FILE
        if not card_path.is_file():
            raise ModelLoadError(
                f"{self.path}: no {CARD_FILE}; train models first with `recloop train`"
            )
        try:
            self.card: ModelCard = msgspec.json.decode(card_path.read_bytes(), type=ModelCard)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ModelLoadError(f"{card_path}: invalid model card: {exc}") from None
        if self.card.format != CARD_FORMAT:
            raise ModelLoadError(
                f"{card_path}: card format {self.card.format}, expected {CARD_FORMAT}"
            )
        try:
            self.items = Vocabulary.load(self.path / ITEMS_FILE)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{self.path}: cannot read {ITEMS_FILE}: {exc}") from None
        if len(self.items) != self.card.vocab_size or self.items.sha256() != self.card.vocab_sha256:
            raise ModelLoadError(
                f"{self.path}: {ITEMS_FILE} does not match the card (size {len(self.items)} vs "
                f"{self.card.vocab_size}, or hash differs); the directory mixes two trainings"
            )

    @property
    def version(self) -> str:
        """The model version from the card."""
        return self.card.version

    def model(self, role: str) -> ModelEntry:
        """The card entry for model `role` (recommender, behaviour_lstm, behaviour_lm, generator)."""
        try:
            return self.card.models[role]
        except KeyError:
            raise ModelLoadError(
                f"{self.path}: no {role!r} model in the card (has {sorted(self.card.models)})"
            ) from None

    def file(self, role: str) -> Path:
        """Path of an auxiliary artifact listed in the card's `files`."""
        try:
            path = self.path / self.card.files[role]
        except KeyError:
            raise ModelLoadError(f"{self.path}: no {role!r} file in the card") from None
        if not path.is_file():
            raise ModelLoadError(f"{path}: listed in the card but missing")
        return path
