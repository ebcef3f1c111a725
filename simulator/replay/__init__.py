"""Record Kafka topics to a file and replay recordings or external event logs to Kafka.

* `recording`: the file format (zstd-compressed JSON lines: header, records, trailer).
* `capture`: capture topics to a recording, bounded by time, count or offsets.
* `sources`: recordings and `models/` event logs as rows of contract `UserEvent`s.
* `amplify`: selection, cloning, looping and per-user `seq` renumbering.
* `replayer`: the paced (or as-fast-as-possible) publisher, and a schedule a scenario can merge.
* `scenario`: a scenario's `replay:` section as this process's `ReplaySource`.
"""
