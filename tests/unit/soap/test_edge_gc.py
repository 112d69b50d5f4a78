"""The SOAP edge never stops the process for a full garbage collection of its own.

spyne's MethodContext.close() would run ``gc.collect()`` once a second; in a broker that holds the GIL for
tens of milliseconds, so every request in flight (and, embedded, every delivery) waits. hiem turns it off.
"""

from __future__ import annotations

import gc

import spyne.context

from hiem import ns
from tests.unit.soap.test_envelope_fuzz import ECHO_BODY, ENDPOINT, call_wsgi, envelope


def test_a_request_does_not_trigger_a_full_collection(monkeypatch):
    # spyne collects when its last collection is older than MIN_GC_INTERVAL: make it look ancient
    monkeypatch.setattr(spyne.context, "_LAST_GC_RUN", 0.0)
    collections: list[int] = []

    def observe(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    enabled = gc.isenabled()
    gc.disable()  # automatic collections off: any collection seen now was asked for explicitly
    gc.callbacks.append(observe)
    try:
        for _ in range(3):
            status, _headers, payload = call_wsgi(ENDPOINT, envelope(ns.SOAP12, ECHO_BODY),
                                                  "application/soap+xml; charset=utf-8")
            assert status == 200, payload
    finally:
        gc.callbacks.remove(observe)
        if enabled:
            gc.enable()
    assert collections == []
