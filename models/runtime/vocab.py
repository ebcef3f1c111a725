"""Item/user vocabularies: index 0 is padding, 1 is out-of-vocabulary, then the raw ids."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PAD = 0
OOV = 1
RESERVED = ("<pad>", "<oov>")


class Vocabulary:
    """Maps raw id strings to dense int64 indices and back."""

    def __init__(self, ids: Sequence[str]) -> None:
        if len(set(ids)) != len(ids):
            raise ValueError("vocabulary ids must be unique")
        self._ids: list[str] = [*RESERVED, *map(str, ids)]
        self._index: dict[str, int] = {v: i for i, v in enumerate(self._ids)}
        # The reserved tokens must never be produced by encoding a real id.
        for token in RESERVED:
            self._index.pop(token, None)
        self._decode = np.asarray(self._ids, dtype=object)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        """All entries, including the two reserved ones at 0 and 1."""
        return list(self._ids)

    def encode(self, ids: Sequence[str]) -> np.ndarray:
        """Indices of `ids` (int64); unknown ids map to `OOV` (1)."""
        get = self._index.get
        return np.fromiter((get(str(i), OOV) for i in ids), dtype=np.int64, count=len(ids))

    def decode(self, indices: np.ndarray | Sequence[int]) -> list[str]:
        """Raw ids of `indices` (reserved indices decode to "<pad>" / "<oov>")."""
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._ids)):
            raise IndexError(f"index out of range for a vocabulary of {len(self._ids)}")
        return self._decode[idx].tolist()

    def sha256(self) -> str:
        """Hash of the ordered entries; the model card records it to catch mismatched files."""
        return hashlib.sha256("\n".join(self._ids).encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        """Write as a JSON list (reserved entries included, so index = list position)."""
        Path(path).write_text(json.dumps(self._ids))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a file written by `save`."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, list) or tuple(data[:2]) != RESERVED:
            raise ValueError(f"{path}: not a vocabulary file (must start with {list(RESERVED)})")
        return cls(data[2:])
