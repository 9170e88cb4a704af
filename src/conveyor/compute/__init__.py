"""Compute: where work runs and what it costs (cost.py: price table, usage meter)."""
