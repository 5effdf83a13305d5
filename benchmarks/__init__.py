"""Benchmarks: threadkeep beside its peers (peersbench) plus threadkeep-only workloads.

Run everything with ``python -m benchmarks`` (see ``benchmarks/__main__.py``).
"""
