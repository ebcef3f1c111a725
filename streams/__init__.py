"""The Faust recommender worker. Run with `recloop worker` or `faust -A recloop.streams.app worker`.

Importing this package never imports Faust; only `recloop.streams.app` does.
"""
