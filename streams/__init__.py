"""RecLoop streams: the event contract, Kafka settings and the Faust recommender worker.

Importing this package (or `streams.contract`, `streams.config`, `streams.topics`) never imports
Faust; only `streams.app` and modules below it do, so the simulator can share the contract
without pulling in the worker.
"""
