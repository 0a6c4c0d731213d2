"""What a command answers, printed one way: one JSON document with `--json`, lines of text without."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Exit(IntEnum):
    """The exit codes, as `--help` documents them."""

    OK = 0  # done; for the checks (queue-health, doctor): everything is ok
    ATTENTION = 1  # done, and what it found needs attention, or the request was refused
    USAGE = 2  # wrong arguments or configuration, or a command the --api mode cannot run
    UNAVAILABLE = 3  # Redis, the store or the API did not answer: try again later


@dataclass
class Outcome:
    document: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    code: Exit = Exit.OK
    error: bool = False  # the lines go to stderr

    def emit(self, as_json: bool) -> int:
        if as_json:
            print(json.dumps(self.document, indent=2, default=str))
        else:
            print("\n".join(self.lines), file=sys.stderr if self.error else sys.stdout)
        return int(self.code)


def failure(kind: str, detail: str, code: Exit, **extra: Any) -> Outcome:
    """A command that could not do its work: `{"error": {...}}` on stdout with --json, else the
    detail on stderr."""
    return Outcome({"error": {"type": kind, "detail": detail, **extra}}, [detail], code, error=True)
