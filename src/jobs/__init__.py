"""Job types: one module per job (its payload model and handler), declared in `registry.py`."""
