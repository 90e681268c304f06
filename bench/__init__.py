"""Benchmarks that print ratios measured in one run (``make bench``).

Absolute times on shared machines say little; each benchmark times the product
against a baseline in the same process, interleaved, and reports the ratio.
"""
