"""Data in: the canonical event schema, loaders for public logs, preprocessing, a synthetic world.

numpy and the standard library only (pyarrow is optional, for Parquet), so the simulator can use
the synthetic world without the training extra.
"""
