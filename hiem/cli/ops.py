"""``hiem operators …``, ``hiem status`` and the progress bars of the long CLI operations.

``register`` adds the subcommands to ``hiem``'s parser, so :mod:`hiem.cli.main` only has to call it.
Progress bars go to stderr (rich), leaving stdout to the lines scripts parse.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hiem.config import Settings
from hiem.ops.queue import QueueStatus
from hiem.ops.stats import Snapshot
from hiem.store.db import Database
from hiem.store.topics import LoadResult

REDELIVER_BATCH = 500


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ops = sub.add_parser("operators", help="operators of the /ops console").add_subparsers(
        required=True, metavar="ACTION")
    add = ops.add_parser("add", help="create an operator (password prompted, or read from stdin)")
    add.add_argument("username")
    add.add_argument("--role", choices=["admin", "viewer"], required=True,
                     help="admin acts (redeliver, unpark); viewer sees everything and cannot act")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(func=_operators_add)
    ops.add_parser("list", help="print the operators").set_defaults(func=_operators_list)
    status = sub.add_parser("status", help="the console's overview: traffic, deliveries, latency, queue, backlog")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(func=_status)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def _operators_add(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.ops.operators import OperatorError, add_operator

    try:
        password = _read_password(args.password_stdin)
        with open_database(settings).session() as session:
            add_operator(session, args.username, password, args.role)
    except (OperatorError, ValueError) as exc:
        print(f"hiem: {exc}", file=sys.stderr)
        return 1
    print(f"operator {args.username} added ({args.role})")
    return 0


def _operators_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from hiem.app.bootstrap import open_database
    from hiem.store.models import Operator

    with open_database(settings).session() as session:
        for row in session.scalars(select(Operator).order_by(Operator.username)):
            print(f"{row.username:24}  {row.role:7}  {'disabled' if row.disabled else 'enabled':8}  "
                  f"created {row.created_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.ops import stats
    from hiem.ops.queue import QueueMonitor

    if not settings.embedded:
        from hiem.worker import celery_app as celery_app

        celery_app.configure(settings)  # to ask the workers which queues they consume
    with open_database(settings).session() as session:
        snap = stats.snapshot(session)
    queue = QueueMonitor(settings).status()
    if args.json:
        print(json.dumps({**snap.to_json(), "queue": queue.to_json()}, indent=2))
        return 0
    for line in status_lines(snap, queue):
        print(line)
    return 0


def status_lines(snap: Snapshot, queue: QueueStatus) -> Iterator[str]:
    """The overview as aligned text lines (what ``hiem status`` prints)."""
    from hiem.ops.render import seconds

    def row(label: str, value: str) -> str:
        return f"{label:15} {value}"

    yield f"hiem status at {snap.at:%Y-%m-%d %H:%M:%S} UTC ({queue.mode} mode)"
    per_minute = " ".join(str(n) for n in snap.accepted.per_minute)
    plus = "+" if snap.accepted.window_full else ""
    yield row("accepted", f"{snap.accepted.last_minute}{plus} in the last minute (per minute, oldest first: "
                          f"{per_minute})")
    yield row("deliveries", "  ".join(f"{k} {v}" for k, v in snap.deliveries.items()))
    yield row("latency", f"p50 {seconds(snap.recent.p50)}  p95 {seconds(snap.recent.p95)}  "
                         f"({len(snap.recent.latencies)} delivered in the last hour)")
    if queue.mode == "embedded":
        yield row("workers/queue", queue.note)
    else:
        workers = "?" if queue.workers is None else str(len(queue.workers)) + (
            f" ({', '.join(queue.workers)})" if queue.workers else ": no worker consumes this queue")
        yield row("workers seen", workers)
        yield row("queue depth", f"{'?' if queue.depth is None else queue.depth} in {queue.queue}")
        if queue.note:
            yield row("note", queue.note)
    yield row("dead letters", str(snap.dead_letters))
    yield row("parked", f"{snap.parked} consumer(s)")
    yield row("audit backlog", f"{snap.audit_backlog} record(s) not shipped")
    yield row("subscriptions", "  ".join(f"{k} {v}" for k, v in snap.subscriptions.items()))
    last = f" (last purge {snap.last_purge_at:%Y-%m-%d %H:%M:%S} UTC)" if snap.last_purge_at else " (no purge yet)"
    yield row("purged", "  ".join(f"{k.replace('_', ' ')} {v}" for k, v in snap.purged.items()) + last)


def cli_user() -> str:
    """Who ran a CLI action, for ``operator_actions`` (the OS account: the CLI has no console login)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


# -- progress bars ------------------------------------------------------------------------------------------
@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Progress]:
    """A rich progress bar on stderr (drawn live on a terminal, one summary line otherwise)."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True))
    with progress:
        progress.add_task(description, total=total)
        yield progress


def redeliver_with_progress(database: Database, ids: Sequence[int] | None) -> list[int]:
    """Redeliver dead deliveries in batches (all when ``ids`` is None), recording the CLI operator's action."""
    from sqlalchemy import select

    from hiem.ops.operators import record_action
    from hiem.store import deliveries
    from hiem.store.models import Delivery, DeliveryState

    with database.session() as session:
        query = select(Delivery.id).where(Delivery.state == DeliveryState.DEAD.value).order_by(Delivery.id)
        if ids is not None:
            query = query.where(Delivery.id.in_(list(ids)))
        dead = list(session.scalars(query))
    redelivered: list[int] = []
    with progress_bar("redelivering dead deliveries", len(dead)) as progress:
        for start in range(0, len(dead), REDELIVER_BATCH):
            with database.session() as session:
                batch = deliveries.redeliver(session, dead[start:start + REDELIVER_BATCH])
                if batch:
                    record_action(session, cli_user(), "redeliver",
                                  "all dead" if ids is None else ",".join(map(str, batch)),
                                  f"{len(batch)} dead deliveries redelivered")
            redelivered.extend(batch)
            progress.advance(progress.task_ids[0], len(dead[start:start + REDELIVER_BATCH]))
    return redelivered


def load_topics_with_progress(database: Database, files: Sequence[Path]) -> list[LoadResult]:
    """Load TopicNamespace documents one file (one transaction) at a time, with a bar over the files."""
    from hiem.app.bootstrap import load_topic_files

    results: list[LoadResult] = []
    with progress_bar("loading topic documents", len(files)) as progress:
        for path in files:
            results.extend(load_topic_files(database, [path]))
            progress.advance(progress.task_ids[0])
    return results
