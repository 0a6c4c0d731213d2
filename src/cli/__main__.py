"""`python -m src.cli`: see `src/cli/__init__.py` (or `--help`)."""

import sys

from src.cli import main

sys.exit(main())
