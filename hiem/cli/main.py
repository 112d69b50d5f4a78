"""The ``hiem`` command: serve, worker, topics, subscriptions, deliveries, db."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hiem.config import Settings, load_settings
from hiem.errors import ConfigError

log = logging.getLogger("hiem")

DEV_BANNER = """
############################################################################
#  hiem is running in DEV MODE: NOT FOR PRODUCTION.                        #
#  No SAML assertion or signature is required, loopback and private        #
#  consumer addresses are allowed, and audit records are marked            #
#  unauthenticated. Never expose this process to a network.                #
#  A local dev identity (key + certificate) lives in HIEM_DEV_DIR          #
#  (.hiem-dev/); mint a SAML assertion with it: `hiem dev assertion`.      #
############################################################################
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        if getattr(args, "dev", False):
            settings = settings.with_dev()
        return int(args.func(args, settings) or 0)
    except ConfigError as exc:
        print(f"hiem: configuration error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiem", description="NHIN HIEM v2.0 notification broker")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the broker (embedded worker unless HIEM_BROKER_URL is set)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--dev", action="store_true",
                       help="dev mode, as HIEM_DEV=1: no assertion or signature required, loopback only")
    serve.add_argument("--threads", type=int, default=16, help="HTTP worker threads")
    serve.add_argument("--ops-port", type=int, default=None,
                       help="serve the /ops console and /metrics on this port only (not on --port)")
    serve.add_argument("--ops-host", default=None, help="address for --ops-port (default: --host)")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="run a Celery worker for the configured broker")
    worker.add_argument("--concurrency", "-c", type=int, default=None)
    worker.add_argument("--loglevel", "-l", default="INFO")
    worker.add_argument("--no-sweeper", action="store_true", help="do not run the outbox sweeper here")
    worker.add_argument("--dev", action="store_true",
                        help="dev mode, as HIEM_DEV=1 (give the web process the same): dev identity, "
                             "loopback/private consumer addresses allowed")
    worker.set_defaults(func=_worker)

    topics = sub.add_parser("topics", help="topic trees").add_subparsers(required=True, metavar="ACTION")
    load = topics.add_parser("load", help="load TopicNamespace documents (idempotent)")
    load.add_argument("files", nargs="+", type=Path)
    load.set_defaults(func=_topics_load)
    topics.add_parser("list", help="print the topic trees").set_defaults(func=_topics_list)

    subs = sub.add_parser("subscriptions", help="subscriptions").add_subparsers(required=True, metavar="ACTION")
    subs_list = subs.add_parser("list", help="print subscriptions")
    subs_list.add_argument("--status", choices=["active", "unsubscribed", "expired"])
    subs_list.set_defaults(func=_subscriptions_list)

    dels = sub.add_parser("deliveries", help="deliveries").add_subparsers(required=True, metavar="ACTION")
    dels_list = dels.add_parser("list", help="print deliveries, newest first")
    dels_list.add_argument("--state", choices=["pending", "in_flight", "retrying", "delivered", "dead",
                                               "cancelled"])
    dels_list.add_argument("--limit", type=int, default=200)
    dels_list.set_defaults(func=_deliveries_list)
    redeliver = dels.add_parser("redeliver", help="send dead deliveries again")
    target = redeliver.add_mutually_exclusive_group(required=True)
    target.add_argument("ids", nargs="*", type=int, default=[])
    target.add_argument("--all-dead", action="store_true")
    redeliver.set_defaults(func=_deliveries_redeliver)

    unpark = dels.add_parser("unpark", help="let consumers parked by the circuit breaker be tried now")
    unpark_target = unpark.add_mutually_exclusive_group(required=True)
    unpark_target.add_argument("origin", nargs="?", help="scheme://host:port as `deliveries parked` shows")
    unpark_target.add_argument("--all", action="store_true")
    unpark.set_defaults(func=_deliveries_unpark)
    dels.add_parser("parked", help="consumers parked by the circuit breaker").set_defaults(func=_deliveries_parked)

    audit = sub.add_parser("audit", help="the ATNA audit trail").add_subparsers(required=True, metavar="ACTION")
    audit_list = audit.add_parser("list", help="audit records, newest first")
    audit_list.add_argument("--since", type=_since, help="ISO time (2026-11-22T10:00) or age (30m, 2h, 7d)")
    audit_list.add_argument("--event", help="import, export, subscribe-accepted, subscribe-refused, "
                            "subscription-terminated, security-alert, ... (AuditKind values; import/export work)")
    audit_list.add_argument("--limit", type=int, default=200)
    audit_list.set_defaults(func=_audit_list)
    audit_show = audit.add_parser("show", help="one record as its DICOM audit message (pretty XML)")
    audit_show.add_argument("id", type=int)
    audit_show.set_defaults(func=_audit_show)

    authz = sub.add_parser("authz", help="authorization rules").add_subparsers(required=True, metavar="ACTION")
    allow = authz.add_parser("allow", help="let an organization subscribe to / publish on a topic subtree")
    allow.add_argument("organization", help="the SAML organization-id (or organization) of the partner")
    allow.add_argument("action", choices=["subscribe", "publish"])
    allow.add_argument("topic", help="a topic subtree: nhin:GIPSE/Biosurveillance, {namespace-uri}Path, "
                       "or {namespace-uri} for the whole namespace")
    allow.set_defaults(func=_authz_allow)
    authz.add_parser("list", help="print the rules").set_defaults(func=_authz_list)
    revoke = authz.add_parser("revoke", help="remove a rule")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=_authz_revoke)

    dev = sub.add_parser("dev", help="developer tools").add_subparsers(required=True, metavar="ACTION")
    mint = dev.add_parser("assertion", help="mint a SAML assertion with the local dev identity")
    mint.add_argument("--subject", default="dev.user@example.org")
    mint.add_argument("--organization", default="Example Health Agency")
    mint.add_argument("--organization-id", default="urn:oid:2.16.840.1.113883.3.9999")
    mint.add_argument("--home-community-id", default="urn:oid:2.16.840.1.113883.3.9999")
    mint.add_argument("--lifetime", type=float, default=3600.0, help="seconds")
    mint.set_defaults(func=_dev_assertion, dev=True)

    db = sub.add_parser("db", help="database").add_subparsers(required=True, metavar="ACTION")
    db.add_parser("upgrade", help="apply schema migrations").set_defaults(func=_db_upgrade)
    db.add_parser("stats", help="rows and the oldest row of each growing table; what retention purged") \
        .set_defaults(func=_db_stats)
    from hiem.cli.ops import register as register_ops_commands  # `operators`, `status` (hiem.ops)

    register_ops_commands(sub)
    return parser


# -- serve / worker -----------------------------------------------------------------------------------------
def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.server import run_server
    from hiem.memory import limit_malloc_arenas

    if settings.dev:
        if not all(ipaddress.ip_address(_host_ip(h)).is_loopback for h in (args.host, args.ops_host or args.host)):
            print("hiem: --dev binds to loopback only; use --host 127.0.0.1", file=sys.stderr)
            return 2
        print(DEV_BANNER, file=sys.stderr, flush=True)
    limit_malloc_arenas()
    return run_server(settings, host=args.host, port=args.port, threads=args.threads, ops_host=args.ops_host,
                      ops_port=args.ops_port)


def _host_ip(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.server import run_worker
    from hiem.memory import limit_malloc_arenas

    if settings.embedded:
        print("hiem worker needs HIEM_BROKER_URL (e.g. redis://127.0.0.1:6379/0); without it `hiem serve` "
              "runs its own embedded worker", file=sys.stderr)
        return 2
    if settings.dev:
        print(DEV_BANNER, file=sys.stderr, flush=True)
    limit_malloc_arenas()
    return run_worker(settings, concurrency=args.concurrency, loglevel=args.loglevel,
                      sweeper=not args.no_sweeper)


# -- operator commands ----------------------------------------------------------------------------------------
def _topics_load(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database

    for path in args.files:
        if not path.is_file():
            print(f"hiem: no such file: {path}", file=sys.stderr)
            return 2
    from hiem.cli.ops import load_topics_with_progress  # rich progress bar on stderr

    results = load_topics_with_progress(open_database(settings), list(args.files))
    for result in results:
        print(f"{result.namespace}: {result.added} topics added, {result.existing} already loaded")
    return 0


def _topics_list(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import topics

    db = open_database(settings)
    with db.session() as session:
        current = None
        for uri, path in topics.tree_rows(session):
            if uri != current:
                print(f"{{{uri}}}")
                current = uri
            depth = path.count("/")
            print(f"{'  ' * (depth + 1)}{path.rsplit('/', 1)[-1]}    ({path})")
    return 0


def _subscriptions_list(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import subscriptions

    db = open_database(settings)
    with db.session() as session:
        rows = subscriptions.list_subscriptions(session, args.status)
        print(f"{'id':36}  {'status':12}  {'created (UTC)':19}  {'dialect':8}  topic  ->  consumer")
        for s in rows:
            print(f"{s.id:36}  {s.status:12}  {s.created_at:%Y-%m-%d %H:%M:%S}  {s.dialect.rsplit('/', 1)[-1]:8}  "
                  f"{s.topic_expression}  ->  {s.consumer_address}")
    return 0


def _deliveries_list(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import deliveries

    db = open_database(settings)
    with db.session() as session:
        rows = deliveries.list_deliveries(session, args.state, args.limit)
        print(f"{'id':>8}  {'notif':>7}  {'state':10}  {'tries':>5}  {'updated (UTC)':19}  subscription / last error")
        for d in rows:
            print(f"{d.id:>8}  {d.notification_id:>7}  {d.state:10}  {d.attempts:>5}  "
                  f"{d.updated_at:%Y-%m-%d %H:%M:%S}  {d.subscription_id}  {d.last_error or ''}")
    return 0


def _deliveries_redeliver(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database

    db = open_database(settings)
    if args.all_dead:
        from hiem.cli.ops import redeliver_with_progress  # batches with a rich progress bar; recorded

        ids = redeliver_with_progress(db, None)
    else:
        from hiem.cli.ops import cli_user
        from hiem.ops.actions import ACTIONS, run

        ids = []
        for delivery_id in args.ids:  # the console's action, recorded the same way
            outcome = run(db, cli_user(), ACTIONS["redeliver"], str(delivery_id))
            if outcome.ok:
                ids.append(delivery_id)
            else:
                print(f"delivery {delivery_id}: {outcome.message}", file=sys.stderr)
    if not ids:
        print("no dead deliveries matched")
        return 1 if args.ids else 0
    shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
    print(f"redelivering {len(ids)} deliveries ({shown}); a worker's sweeper picks them up within seconds")
    return 0


def _deliveries_parked(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import breaker

    with open_database(settings).session() as session:
        for consumer in breaker.parked(session):
            print(f"{consumer.origin}  parked until {consumer.parked_until:%Y-%m-%d %H:%M:%S} UTC  "
                  f"after {consumer.consecutive_failures} failures: {consumer.last_error or ''}")
    return 0


def _deliveries_unpark(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.cli.ops import cli_user
    from hiem.ops.actions import ACTIONS, run
    from hiem.store import breaker

    db = open_database(settings)
    if args.all:
        with db.session() as session:
            origins = [consumer.origin for consumer in breaker.parked(session)]
    else:
        origins = [args.origin]
    count = 0
    for origin in origins:  # the console's action, recorded the same way
        outcome = run(db, cli_user(), ACTIONS["unpark"], origin)
        count += outcome.ok
        if not outcome.ok:
            print(f"{origin}: {outcome.message}", file=sys.stderr)
    print(f"{count} consumer(s) will be tried by their next delivery")
    return 0 if count else 1


_EVENT_ALIASES = {"import": "notify-received", "export": "notify-sent"}


def _since(value: str):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1] in units:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither an ISO time nor an age like 30m") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _audit_list(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.audit import records as audit_records

    kind = _EVENT_ALIASES.get(args.event, args.event) if args.event else None
    with open_database(settings).session() as session:
        print(f"{'id':>8}  {'time (UTC)':19}  {'event':24}  {'outcome':>7}  {'shipped':7}  subscription / message")
        for r in audit_records.list_records(session, args.since, kind, args.limit):
            print(f"{r.id:>8}  {r.created_at:%Y-%m-%d %H:%M:%S}  {r.kind:24}  {r.outcome:>7}  "
                  f"{'yes' if r.shipped_at else 'no':7}  {r.subscription_id or ''} {r.message_id or ''}")
    return 0


def _audit_show(args: argparse.Namespace, settings: Settings) -> int:
    from lxml import etree

    from hiem import xmlsafe
    from hiem.app.bootstrap import open_database
    from hiem.audit import build_audit_message, event_from_json
    from hiem.store.models import AuditRecord

    with open_database(settings).session() as session:
        record = session.get(AuditRecord, args.id)
        if record is None:
            print(f"hiem: no audit record {args.id}", file=sys.stderr)
            return 1
        message = build_audit_message(event_from_json(record.event))
    print(etree.tostring(xmlsafe.parse(message), pretty_print=True, encoding="unicode"))
    return 0


_PREFIXES = {"nhin": "http://www.hhs.gov/healthit/nhin"}


def _topic_argument(text: str):  # type: ignore[no-untyped-def]
    from hiem.wstopics import TopicPath

    if text.startswith("{"):
        namespace, _, path = text[1:].partition("}")
    else:
        prefix, _, path = text.partition(":")
        if prefix not in _PREFIXES:
            raise SystemExit(f"hiem: unknown prefix {prefix!r}; use {{namespace-uri}}Path")
        namespace = _PREFIXES[prefix]
    return namespace, (TopicPath(namespace, tuple(path.strip("/").split("/"))) if path.strip("/") else None)


def _authz_allow(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import authorization

    namespace, topic = _topic_argument(args.topic)
    with open_database(settings).session() as session:
        rule = authorization.add(session, args.organization, args.action, topic, namespace)
        print(f"rule {rule.id}: {rule.organization} may {rule.action} under {{{namespace}}}{rule.topic_prefix}")
    return 0


def _authz_list(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import authorization

    with open_database(settings).session() as session:
        for rule in authorization.rules(session):
            where = f"{{{rule.topic_namespace}}}{rule.topic_prefix}"
            print(f"{rule.id:>5}  {rule.organization:40}  {rule.action:9}  {where}")
    return 0


def _authz_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import authorization

    with open_database(settings).session() as session:
        removed = authorization.remove(session, args.id)
    print("removed" if removed else f"no rule {args.id}")
    return 0 if removed else 1


def _dev_assertion(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.security import mint_assertion
    from hiem.security.setup import broker_identity

    identity = broker_identity(settings)
    assertion = mint_assertion(
        key_pem=identity.key_pem, cert_pem=identity.cert_pem, issuer="hiem-dev-idp", subject_id=args.subject,
        organization=args.organization, organization_id=args.organization_id,
        home_community_id=args.home_community_id, lifetime_seconds=args.lifetime)
    print(assertion.decode())
    print(f"""
# A SAML 2.0 assertion signed by the dev identity in {settings.security.dev_dir}/ (trusted by `hiem serve --dev`).
# Put it in a wsse:Security header of your request; to sign the whole message too, use
# hiem.security.wrap_with_assertion(envelope, assertion, EnvelopeSigner(key, cert)) in Python.
# In production, configure the real IdPs' certificates with HIEM_IDP_CERTS instead.""", file=sys.stderr)
    return 0


def _db_stats(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database
    from hiem.store import retention

    with open_database(settings).session() as session:
        tables = retention.table_stats(session)
        deliveries = retention.purged_deliveries(session)
        purged = retention.purged_by_table(session)
    print(f"{'table':18}  {'rows':>12}  oldest row (UTC)")
    for table in tables:
        oldest = f"{table.oldest:%Y-%m-%d %H:%M:%S}" if table.oldest else "-"
        print(f"{table.table:18}  {table.rows:>12,}  {oldest}")
    window = settings.retention
    print(f"retention: delivered {window.delivered}, dead {window.dead}, notifications {window.notifications}, "
          f"ended subscriptions {window.ended}, audit records {settings.audit.retention_days:g} days")
    print(f"purged so far: deliveries {purged['deliveries']:,} "
          f"({', '.join(f'{k} {v:,}' for k, v in sorted(deliveries.items())) or 'none'}), "
          + ", ".join(f"{table.replace('_', ' ')} {rows:,}" for table, rows in purged.items() if table != "deliveries"))
    return 0


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from hiem.app.bootstrap import open_database

    open_database(settings)
    print("database schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
