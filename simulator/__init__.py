"""RecLoop simulator: simulated users, open-loop load, record and replay, reports."""
