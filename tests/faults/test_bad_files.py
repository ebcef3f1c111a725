"""Corrupted or truncated recordings and scenario files: one line naming the file and the
position of the damage, exit 2, and nothing sent (the target topic stays empty)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from recloop.core.contract import encode
from recloop.core.settings import Settings, settings_env
from recloop.core.topics import ensure_topics
from recloop.simulator.replay.recording import Header, Record, RecordingWriter
from tests.conftest import Broker
from tests.support import ROOT, collect, make_events, run_recloop, unique_topics

N_EVENTS = 5000


def _recording(path: Path) -> bytes:
    events = make_events(50, N_EVENTS // 50)
    with RecordingWriter(path, Header(created=1.0, topics=["recloop.events"])) as writer:
        for i, e in enumerate(events):
            value = encode(e)
            writer.write(Record.of("recloop.events", 0, i, 1_700_000_000_000 + i, None, value))
    return path.read_bytes()


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flipped(data: bytes) -> bytes:
    damaged = bytearray(data)
    for i in range(len(data) // 2, len(data) // 2 + 40):
        damaged[i] ^= 0x5A
    return bytes(damaged)


def _bad_line(data: bytes) -> bytes:
    import zstandard

    lines = zstandard.ZstdDecompressor().decompressobj().decompress(data).split(b"\n")
    lines[1234] = lines[1234][:40]  # record line 1235: JSON cut mid-way
    return zstandard.ZstdCompressor().compress(b"\n".join(lines))


RECORDINGS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (_cut, r"line \d+: the file ends without a trailer"),
    "corrupted block": (_flipped, r"line \d+: compressed data is damaged"),
    "malformed line": (_bad_line, r"line 1235: "),
    "not zstd": (lambda _: b"hello\n" * 10, r": not a RecLoop recording \(not zstd"),
    "empty": (lambda _: b"", r": not a RecLoop recording"),
}


@pytest.fixture
def target(tansu: Broker) -> tuple[Settings, dict[str, str]]:
    """Fresh, existing topics (so "nothing sent" is not "topic missing") and their env."""
    settings = Settings(bootstrap=tansu.bootstrap, topics=unique_topics("badfile"))
    asyncio.run(ensure_topics(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    return settings, env | settings_env(settings)


def _assert_nothing_sent(settings: Settings) -> None:
    sent = asyncio.run(collect(settings.bootstrap, settings.topics.events, lambda _: False, 2))
    assert sent == []


@pytest.mark.parametrize("damage", list(RECORDINGS))
def test_damaged_recording_strict_replay_exits_2_naming_file_and_line(
    target: tuple[Settings, dict[str, str]], tmp_path: Path, damage: str
) -> None:
    settings, env = target
    make, says = RECORDINGS[damage]
    path = tmp_path / "damaged.rec.zst"
    path.write_bytes(make(_recording(tmp_path / "good.rec.zst")))
    proc = run_recloop("replay", str(path), "--speed", "max", "--strict", env=env, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(str(path)) and re.search(says, error), proc.stderr
    assert "Traceback" not in proc.stderr
    _assert_nothing_sent(settings)


def test_truncated_recording_lenient_replay_sends_only_the_intact_part_and_says_where(
    target: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """Without --strict a cut recording replays what precedes the damage (documented), and
    says so naming the file and line; a damaged first block leaves nothing and exits 2."""
    settings, env = target
    data = _recording(tmp_path / "good.rec.zst")
    path = tmp_path / "cut.rec.zst"
    path.write_bytes(_cut(data))
    proc = run_recloop("replay", str(path), "--speed", "max", env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warning = " ".join(proc.stderr.split())
    assert re.search(rf"recording truncated: {re.escape(str(path))}, line (\d+)", warning)
    sent = int(re.search(r"sent ([\d,]+) events", warning + proc.stdout).group(1).replace(",", ""))
    assert 0 < sent < N_EVENTS
    got = asyncio.run(
        collect(settings.bootstrap, settings.topics.events, lambda vs: len(vs) >= sent, 20)
    )
    assert len(got) == sent

    first_block = tmp_path / "first.rec.zst"
    first_block.write_bytes(_flipped(data[: len(data) // 2 + 100]))
    proc = run_recloop("replay", str(first_block), "--speed", "max", env=env, timeout=60)
    assert proc.returncode == 2 and "nothing to replay" in proc.stderr, proc.stderr


SCENARIOS: dict[str, tuple[bytes, str]] = {
    "unclosed bracket": (
        b"stages: [{kind: constant, rate: 5, duration: 10s}\npopulation: {size: 4\n",
        r", line 2, column 1: not valid YAML: .*expected ',' or ']'",
    ),
    "tab indent": (b"stages:\n\t- kind: constant\n", r", line 2, column 1: not valid YAML"),
    "invalid UTF-8": (b"name: caf\xc3\x28\nstages: []\n", r", byte 9: not UTF-8 text"),
    "binary": (b"\xff\xfe\x00\x01stages", r", byte 0: not UTF-8 text"),
    "NUL character": (b"stages: [\x00]\n", r", character 10: not valid YAML"),
    "truncated": (
        (ROOT / "simulator/scenarios/example.yaml").read_bytes()[:300],
        r" is invalid:|, line \d+, column \d+",
    ),
    "empty": (b"", r": expected a mapping of keys"),
}


@pytest.mark.parametrize("damage", list(SCENARIOS))
def test_damaged_scenario_exits_2_naming_file_and_position(
    target: tuple[Settings, dict[str, str]], tmp_path: Path, damage: str
) -> None:
    settings, env = target
    text, says = SCENARIOS[damage]
    path = tmp_path / "scenario.yaml"
    path.write_bytes(text)
    proc = run_recloop("simulate", str(path), "--no-live", "--metrics-port", "0", env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(str(path)) and re.search(says, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    _assert_nothing_sent(settings)
