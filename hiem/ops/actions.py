"""What an operator can do, from the console or the CLI, each recorded in ``operator_actions`` with its outcome.

An action is a name, the form field naming its target, a sentence for the confirmation page and the
change itself. The change and its record are written in one transaction: there is no redelivery without a
row saying who asked for it, and no row claiming a redelivery that was rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from hiem.ops import operators, queries
from hiem.store import breaker, deliveries
from hiem.store.db import Database
from hiem.store.models import Delivery, DeliveryState


class ActionRefused(ValueError):
    """The target does not exist or is not in a state the action applies to (nothing was changed)."""


@dataclass(frozen=True)
class Action:
    name: str
    field: str          # the form field that names the target
    label: str          # the button
    describe: Callable[[str], str]
    perform: Callable[[Session, str], str]


def _redeliver_one(session: Session, target: str) -> str:
    try:
        delivery_id = int(target)
    except ValueError:
        raise ActionRefused(f"{target!r} is not a delivery id") from None
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise ActionRefused(f"no delivery {delivery_id}")
    if row.state != DeliveryState.DEAD.value:
        raise ActionRefused(f"delivery {delivery_id} is {row.state}, not dead")
    deliveries.redeliver(session, [delivery_id])
    return f"delivery {delivery_id} redelivered"


def _redeliver_consumer(session: Session, target: str) -> str:
    ids = queries.dead_ids_for_consumer(session, target)
    if not ids:
        raise ActionRefused(f"no dead deliveries for {target}")
    redelivered = deliveries.redeliver(session, ids)
    return f"{len(redelivered)} dead deliveries redelivered"


def _unpark(session: Session, target: str) -> str:
    if not queries.consumer_known(session, target):
        raise ActionRefused(f"no consumer {target}")
    if not breaker.unpark(session, target):
        raise ActionRefused(f"{target} is not parked")
    return "unparked: its next delivery is the trial"


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("redeliver", "delivery", "Redeliver",
           lambda t: f"Redeliver dead delivery {t}? It gets a fresh attempt budget and is sent within seconds.",
           _redeliver_one),
    Action("redeliver-consumer", "consumer", "Redeliver all",
           lambda t: f"Redeliver every dead delivery to {t}? Each gets a fresh attempt budget.", _redeliver_consumer),
    Action("unpark", "origin", "Unpark now",
           lambda t: f"Un-park {t} now? Its next delivery is the breaker's trial: success closes the circuit breaker, "
                     "failure parks it again for longer.", _unpark),
)}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    action_id: int


def run(database: Database, username: str, action: Action, target: str) -> Outcome:
    """Perform ``action`` on ``target`` as ``username`` and record it, success or refusal alike."""
    try:
        with database.session() as session:
            message = action.perform(session, target)
            row = operators.record_action(session, username, action.name, target, message)
            return Outcome(True, message, row.id)
    except ActionRefused as exc:
        with database.session() as session:
            row = operators.record_action(session, username, action.name, target, f"refused: {exc}")
            return Outcome(False, str(exc), row.id)


def record_refusal(database: Database, username: str, action: str, target: str, reason: str) -> None:
    """An attempt the console refused before acting (a viewer pressing a button it should not have)."""
    with database.session() as session:
        operators.record_action(session, username, action, target, f"refused: {reason}")
