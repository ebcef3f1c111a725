"""RecLoop's shared core: the event contract, the settings, the topic set-up and the errors.

A leaf package: it imports nothing else of the project, so the worker, the simulator and the
models' data code can all depend on it without depending on each other.
"""
