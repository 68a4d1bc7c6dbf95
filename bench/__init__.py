"""Benchmarks (not timed tests): each module compares a piece of adbtd with its physical limit.

``python -m bench`` runs them all; ``python -m bench NAME ...`` runs some. Results are committed
under ``docs/benchmarks/``.
"""
