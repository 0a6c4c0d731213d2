"""Operator commands: `python -m src.cli [--json] [--api URL] COMMAND` (`--help` says it all)."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from src.cli import direct
from src.cli.outcome import Exit, Outcome, failure
from src.logging import configure_logging

DESCRIPTION = """Operator commands for the queue, the workers and the code versions.

Where they run: by default straight against Redis and the store (REDIS_URL, SQLITE_PATH or
MONGODB_URL, configured as for the API and the workers). With `--api URL` (or CLINIC_API_URL, and
CLINIC_API_TOKEN for the bearer token) they run through a deployed API instead, with no Redis or
store credentials; doctor and retime-naive need direct access.

`--json` prints one JSON document on stdout (an error too: {"error": {...}}); without it, text."""
EPILOG = """exit codes:
  0  done; for queue-health and doctor: everything is ok
  1  done, and what it found needs attention (a problem, a version that was not allowed), or the
     request was refused (not found, conflict, forbidden)
  2  wrong arguments or configuration, or a command --api cannot run
  3  Redis, the store or the API did not answer: try again later"""
DirectCommand = Callable[[Any, argparse.Namespace], Coroutine[Any, Any, Outcome]]


def _common() -> argparse.ArgumentParser:
    """--json and --api, accepted before or after the command (SUPPRESS: a later default never
    hides an earlier value)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document on stdout instead of text",
    )
    common.add_argument(
        "--api",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="run through the API at URL (default: CLINIC_API_URL; token: CLINIC_API_TOKEN)",
    )
    return common  # fmt: skip


def parser() -> argparse.ArgumentParser:
    common = _common()
    p = argparse.ArgumentParser(
        prog="python -m src.cli",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: DirectCommand, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help, parents=[common])
        cmd.set_defaults(handler=handler)
        return cmd

    command("workers", direct.workers, "the live workers: id, host, version, state, beat age, jobs held")
    command("versions", direct.versions, "the code versions allowed to claim jobs")
    command("allow-version", direct.allow_version, "allow a code version to claim jobs").add_argument(
        "version"
    )
    command(
        "retire-version",
        direct.retire_version,
        "fence a code version: its workers claim nothing (exit 1 if it was not allowed)",
    ).add_argument("version")
    command("queue-info", direct.queue_info, "each queue's length, deferred, in progress, failed, finished")
    command("queue-health", direct.queue_health, "the health model: exit 1 unless every check is ok")
    command("job", direct.job, "a job's status and the story of every generation").add_argument("job_id")
    command("cancel", direct.cancel, "cancel a queued job or abort a running one").add_argument("job_id")
    command("retry", direct.retry, "run a failed, cancelled or interrupted job again").add_argument("job_id")
    clean = command("cleanup", direct.cleanup, "delete ledger records and results of old finished jobs")
    clean.add_argument("--older-than", type=float, default=None, help="seconds (default: ARQ_KEEP_RESULT)")
    command(
        "doctor", direct.doctor, "look for known incidents: exit 1 when any is found (direct access only)"
    )
    retime = command("retime-naive", direct.retime_naive,
                     "one-off: correct times POST /api/v1/appointments stored as UTC before APP_TIMEZONE "
                     "(direct access only)")  # fmt: skip
    retime.add_argument("--created-before", required=True, help="the upgrade's time, with an offset")
    retime.add_argument("--apply", action="store_true", help="write (default: a dry run that reports)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    as_json: bool = getattr(args, "json", False)
    url = getattr(args, "api", None) or os.environ.get("CLINIC_API_URL")
    # log lines go to stderr, never into the document on stdout
    if url:
        from src.cli import remote  # the client is needed only here

        configure_logging("WARNING", "auto")
        token = os.environ.get("CLINIC_API_TOKEN")
        outcome = asyncio.run(remote.run(args.command, args, url, token))
    else:
        from pydantic import ValidationError

        from src.config import describe_errors, get_settings

        try:
            settings = get_settings()
        except ValidationError as exc:  # one line naming each wrong variable, never its value
            return failure("configuration", f"configuration error: {describe_errors(exc)}", Exit.USAGE).emit(
                as_json
            )
        configure_logging(settings.log_level, settings.log_format)
        handler: DirectCommand = args.handler
        outcome = asyncio.run(handler(settings, args))
    return outcome.emit(as_json)


__all__ = ["Exit", "main", "parser"]
