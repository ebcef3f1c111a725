"""RecLoop: the `recloop` command line and the local Kafka brokers it starts.

The work itself lives in the sibling packages: `models` (offline training and the onnxruntime
runtime), `streams` (event contract and the Faust worker) and `simulator` (simulated users).
"""

__version__ = "0.1.0"
