"""Peer job-queue libraries benchmarked against our worker (bench/compare.py); they live in their own venv."""
