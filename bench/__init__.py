"""Benchmarks that print ratios against a baseline measured in the same run.

`python -m bench.lifecycle [--jobs N] [--slots N] [--smoke]`: no-op throughput of our worker (leases,
heartbeat, fencing, ledger) against raw arq, and recovery after SIGKILL against arq's 310 s TTL.
"""
