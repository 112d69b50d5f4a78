"""WriterTurns: SQLite's one writer, taken in turns with threads answering clients first."""

from __future__ import annotations

import threading

from hiem.store import turns
from hiem.store.turns import WriterTurns, is_serving_a_client, serving_a_client
from tests.support.faults import wait_until


def _waiter(lock: WriterTurns, client: bool, name: str, order: list[str], started: threading.Event) -> threading.Thread:
    def run() -> None:
        started.set()
        with lock.turn(client=client):
            order.append(name)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def _queue_up(lock: WriterTurns, waiters: list[tuple[str, bool]]) -> list[str]:
    """Hold the lock, queue ``waiters`` one by one (each surely waiting before the next), release; the
    order in which they got their turns."""
    order: list[str] = []
    threads = []
    with lock.turn(client=False):
        for count, (name, client) in enumerate(waiters, start=1):
            started = threading.Event()
            threads.append(_waiter(lock, client, name, order, started))
            started.wait(5)
            wait_until(lambda count=count: lock._clients_waiting + lock._background_waiting == count, timeout=5,
                       what=f"{name} waiting for its turn", interval=0.005)
    for thread in threads:
        thread.join(5)
    return order


def test_a_waiting_client_goes_before_background_threads_that_waited_longer():
    order = _queue_up(WriterTurns(), [("claim", False), ("outcomes", False), ("notify", True)])
    assert order[0] == "notify"
    assert sorted(order[1:]) == ["claim", "outcomes"]


def test_background_work_gets_a_turn_after_a_run_of_client_turns():
    lock = WriterTurns()
    clients = [(f"client{i}", True) for i in range(turns.CLIENT_TURNS_IN_A_ROW + 3)]
    order = _queue_up(lock, [("delivery", False), *clients])
    assert "delivery" in order
    assert order.index("delivery") == turns.CLIENT_TURNS_IN_A_ROW


def test_the_lock_is_reentrant_for_its_owner():
    lock = WriterTurns()
    with lock.turn(client=False), lock.turn(client=True), lock.turn():
        assert lock._depth == 3
    assert lock._owner is None and lock._depth == 0


def test_only_one_thread_holds_it_at_a_time():
    lock = WriterTurns()
    inside = 0
    most = 0
    guard = threading.Lock()

    def work(client: bool) -> None:
        nonlocal inside, most
        for _ in range(200):
            with lock.turn(client=client):
                with guard:
                    inside += 1
                    most = max(most, inside)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work, args=(index % 2 == 0,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert most == 1


def test_serving_a_client_marks_only_the_current_context():
    assert not is_serving_a_client()
    seen: list[bool] = []
    with serving_a_client():
        assert is_serving_a_client()
        other = threading.Thread(target=lambda: seen.append(is_serving_a_client()))
        other.start()
        other.join(5)
    assert seen == [False]
    assert not is_serving_a_client()
