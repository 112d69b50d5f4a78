"""The console app in-process: login, CSRF, roles, confirmed and recorded actions, pages, live fragments."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from hiem.clock import utcnow
from hiem.config import Settings
from hiem.ops import operators
from hiem.ops.app import OpsApp
from hiem.ops.queue import QueueStatus
from hiem.ops.settings import OpsSettings
from hiem.store.db import Database
from hiem.store.models import Consumer, Delivery, OperatorAction
from tests.unit.ops.conftest import (
    ADMIN,
    PASSWORD,
    VIEWER,
    FixedQueue,
    Seeded,
    client_for,
    csrf_of,
    login,
    publish,
)

PAGES = ["/ops", "/ops/topics", "/ops/subscriptions", "/ops/notifications", "/ops/deliveries", "/ops/actions",
         "/ops/subscriptions/sub-bad"]


def state(db: Database, delivery_id: int) -> str:
    with db.session() as session:
        return session.get(Delivery, delivery_id).state  # type: ignore[union-attr]


def actions(db: Database) -> list[tuple[str, str, str, str]]:
    with db.session() as session:
        return [(a.username, a.action, a.target, a.outcome)
                for a in session.query(OperatorAction).order_by(OperatorAction.id)]


def confirm_and_act(client: httpx.Client, query: str, back: str = "/ops/deliveries") -> httpx.Response:
    page = client.get(f"/ops/confirm?{query}&back={back}")
    assert page.status_code == 200, page.text
    form = dict(part.split("=", 1) for part in query.split("&"))
    action = form.pop("action")
    return client.post(f"/ops/actions/{action}", data={**form, "back": back, "csrf": csrf_of(page.text)})


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(app: OpsApp, seeded: Seeded, path: str) -> None:
    with client_for(app) as client:
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/ops/login?next=/ops")
        assert client.get(path, headers={"X-Hiem-Partial": "1"}).status_code == 401


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_both_roles(admin: httpx.Client, viewer: httpx.Client, seeded: Seeded,
                                           path: str) -> None:
    for client in (admin, viewer):
        page = client.get(path)
        assert page.status_code == 200, page.text
        assert "<html" in page.text and "UTC" in page.text
        assert page.headers["cache-control"] == "no-store"
        fragment = client.get(path, headers={"X-Hiem-Partial": "1"})
        assert fragment.status_code == 200 and "<html" not in fragment.text, "polling gets the live part only"


def test_login_sets_a_strict_cookie_and_follows_only_console_paths(app: OpsApp) -> None:
    with client_for(app) as client:
        csrf = csrf_of(client.get("/ops/login").text)
        done = client.post("/ops/login", data={"csrf": csrf, "username": ADMIN, "password": PASSWORD,
                                               "next": "https://evil.example/"})
        assert done.status_code == 303 and done.headers["location"] == "/ops", "no open redirect"
        cookie = done.headers["set-cookie"]
        assert all(flag in cookie for flag in ("HttpOnly", "SameSite=Strict", "Path=/ops"))
        assert client.get("/ops/login").status_code == 303, "already logged in"


def test_login_rotates_the_session(app: OpsApp) -> None:
    with client_for(app) as client:
        before = csrf_of(client.get("/ops/login").text)
        login(client)
        assert csrf_of(client.get("/ops").text) != before, "a new nonce (and token) after login"


def test_wrong_password_and_throttle(app: OpsApp) -> None:
    with client_for(app) as client:
        for _ in range(5):
            assert login(client, ADMIN, "wrong password").status_code == 401
        assert login(client, ADMIN, PASSWORD).status_code == 429, "too many failures from this address"


def test_admin_replays_a_dead_delivery_after_confirming(admin: httpx.Client, db: Database, seeded: Seeded) -> None:
    page = admin.get("/ops/deliveries")
    assert f'id="delivery-{seeded.dead}"' in page.text and "HTTP 400: bad request" in page.text
    assert f'name="delivery" value="{seeded.dead}"' in page.text, "a Redeliver button for the dead delivery"
    confirm = admin.get(f"/ops/confirm?action=redeliver&delivery={seeded.dead}&back=/ops/deliveries")
    assert f"Redeliver dead delivery {seeded.dead}?" in confirm.text
    assert state(db, seeded.dead) == "dead", "asking for confirmation changes nothing"
    done = confirm_and_act(admin, f"action=redeliver&delivery={seeded.dead}")
    assert done.status_code == 303 and done.headers["location"].startswith("/ops/deliveries?done=")
    assert state(db, seeded.dead) == "retrying"
    assert actions(db) == [(ADMIN, "redeliver", str(seeded.dead), f"delivery {seeded.dead} redelivered")]
    flash = admin.get(done.headers["location"])
    assert f"delivery {seeded.dead} redelivered" in flash.text


def test_replaying_a_delivery_that_is_not_dead_is_refused_and_recorded(admin: httpx.Client, db: Database,
                                                                        seeded: Seeded) -> None:
    done = confirm_and_act(admin, f"action=redeliver&delivery={seeded.delivered}")
    assert done.status_code == 303
    assert state(db, seeded.delivered) == "delivered"
    assert actions(db)[-1][3] == f"refused: delivery {seeded.delivered} is delivered, not dead"
    assert "refused" in admin.get(done.headers["location"]).text


def test_replay_all_for_a_consumer(admin: httpx.Client, db: Database, seeded: Seeded) -> None:
    second = publish(db)
    with db.session() as session:
        row = session.query(Delivery).filter_by(notification_id=second, subscription_id=seeded.bad).one()
        row.state = "dead"
    done = confirm_and_act(admin, "action=redeliver-consumer&consumer=http://bad.example/notify")
    assert done.status_code == 303
    assert actions(db)[-1] == (ADMIN, "redeliver-consumer", "http://bad.example/notify",
                               "2 dead deliveries redelivered")
    assert state(db, seeded.dead) == "retrying"


def test_probe_a_parked_consumer(admin: httpx.Client, db: Database) -> None:
    now = utcnow()
    with db.session() as session:
        session.add(Consumer(origin="http://down.example:80", consecutive_failures=7, park_count=2,
                             parked_until=now + timedelta(minutes=10), last_error="connect refused", updated_at=now))
    page = admin.get("/ops/deliveries")
    assert "http://down.example:80" in page.text and "Unpark now" in page.text
    done = confirm_and_act(admin, "action=unpark&origin=http://down.example:80")
    assert done.status_code == 303
    assert actions(db)[-1][1:] == ("unpark", "http://down.example:80", "unparked: its next delivery is the trial")
    assert "http://down.example:80" not in admin.get("/ops/deliveries").text


def test_post_without_or_with_a_foreign_csrf_token_is_refused(app: OpsApp, admin: httpx.Client, db: Database,
                                                              seeded: Seeded) -> None:
    target = {"delivery": str(seeded.dead)}
    assert admin.post("/ops/actions/redeliver", data=target).status_code == 403
    assert admin.post("/ops/actions/redeliver", data={**target, "csrf": "x"}).status_code == 403
    with client_for(app) as other:
        login(other)
        foreign = csrf_of(other.get("/ops").text)
    assert admin.post("/ops/actions/redeliver", data={**target, "csrf": foreign}).status_code == 403
    header_token = admin.post("/ops/actions/redeliver", data=target,
                              headers={"X-CSRF-Token": csrf_of(admin.get("/ops").text), "Origin": "http://evil"})
    assert header_token.status_code == 403, "a foreign Origin is refused even with the token"
    assert state(db, seeded.dead) == "dead" and actions(db) == []


def test_viewer_sees_everything_but_cannot_act(viewer: httpx.Client, db: Database, seeded: Seeded) -> None:
    page = viewer.get("/ops/deliveries")
    assert f'id="delivery-{seeded.dead}"' in page.text and "/ops/confirm" not in page.text
    assert viewer.get(f"/ops/confirm?action=redeliver&delivery={seeded.dead}").status_code == 403
    refused = viewer.post("/ops/actions/redeliver", data={"delivery": str(seeded.dead),
                                                       "csrf": csrf_of(viewer.get("/ops").text)})
    assert refused.status_code == 403
    assert state(db, seeded.dead) == "dead"
    assert actions(db) == [(VIEWER, "redeliver", str(seeded.dead), "refused: viewer role")]


def test_disabling_an_operator_or_changing_its_password_ends_its_sessions(admin: httpx.Client,
                                                                          db: Database) -> None:
    assert admin.get("/ops").status_code == 200
    with db.session() as session:
        operators.find(session, ADMIN).password_hash = operators.hash_password("a new password")  # type: ignore[union-attr]
    assert admin.get("/ops").status_code == 303


def test_logout(admin: httpx.Client) -> None:
    csrf = csrf_of(admin.get("/ops").text)
    assert admin.post("/ops/logout", data={}).status_code == 403, "logout needs the token too"
    assert admin.post("/ops/logout", data={"csrf": csrf}).headers["location"] == "/ops/login"
    assert admin.get("/ops").status_code == 303


def test_subscription_filters(admin: httpx.Client, seeded: Seeded) -> None:
    def listed(query: str) -> set[str]:
        text = admin.get(f"/ops/subscriptions?{query}").text
        return {sid for sid in ("sub-good", "sub-bad") if f"/ops/subscriptions/{sid}" in text}

    assert listed("") == {"sub-good", "sub-bad"}
    assert listed("organization=County") == {"sub-good"}
    assert listed("consumer=bad.example") == {"sub-bad"}
    assert listed("status=expired") == set()
    assert listed("topic=InfluenzaLikeIllness&status=active") == {"sub-good", "sub-bad"}
    assert listed("topic=Rash") == set()
    assert listed("topic=%25") == set(), "LIKE wildcards are escaped"


def test_subscription_page_shows_its_epr_and_deliveries(admin: httpx.Client, seeded: Seeded) -> None:
    page = admin.get("/ops/subscriptions/sub-bad").text
    assert "wsnt:SubscriptionReference" in page and "nhin:SubscriptionId" in page and "sub-bad" in page
    assert "wsnt:ConsumerReference" in page and "http://bad.example/notify" in page
    assert f'id="delivery-{seeded.dead}" data-state="dead"' in page
    assert admin.get("/ops/subscriptions/nope").status_code == 404


def test_topics_show_active_subscription_counts(admin: httpx.Client, seeded: Seeded) -> None:
    page = admin.get("/ops/topics").text
    ili = page.index(">InfluenzaLikeIllness</a>", page.index(">GIPSE</a>"))
    assert '<span class="count" title="active subscriptions covering this topic">2</span>' in page[ili:ili + 200]


def test_notifications_show_fanout_progress(admin: httpx.Client, seeded: Seeded) -> None:
    page = admin.get("/ops/notifications").text
    assert f'id="notification-{seeded.notification}"' in page
    assert "1 delivered, 0 failing, 1 dead of 2" in page


def test_static_files_and_unknown_paths(app: OpsApp) -> None:
    with client_for(app) as client:
        css = client.get("/ops/static/ops.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert client.get("/ops/static/app.py").status_code == 404, "only the listed assets"
        assert client.get("/ops/static/..%2Fapp.py").status_code == 404
        assert client.get("/wsn/NotificationProducer").status_code == 404
        login(client)
        assert client.get("/ops/nothing-here").status_code == 404
        assert client.put("/ops").status_code == 405


@pytest.mark.parametrize(("workers", "says"), [(["celery@a", "celery@b"], "celery@a, celery@b"),
                                               ([], "no worker consumes this queue")])
def test_overview_in_distributed_mode(settings: Settings, db: Database, workers: list[str], says: str) -> None:
    queue = FixedQueue(settings, QueueStatus("distributed", "hiem", 42, workers))
    with client_for(OpsApp(settings, db, OpsSettings(secret=b"s" * 32), queue)) as client:
        login(client)
        page = client.get("/ops").text
    assert f"{len(workers)} <small>workers seen</small>" in page and says in page
    assert "42 <small>queued in hiem</small>" in page
