"""Baseline (s) signs for real: a floor message verifies with libxmlsec1 and with hiem's own verifier, covers
at least what hiem's signature covers, and the measuring processes' module imports nothing from hiem.

No timing: the figures come from ``python -m bench`` (docs/performance.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import xmlsec
from lxml import etree

from tests.support.processes import ROOT

floor = pytest.importorskip("bench.signing_floor", reason="the bench needs the test extra (aiohttp, psutil)")

CONSUMER = "http://127.0.0.1:9/notify"


@pytest.mark.parametrize("elliptic", [False, True], ids=["rsa2048", "ec-p256"])
def test_floor_message_is_a_compliant_signed_notify(tmp_path: Path, elliptic: bool) -> None:
    from hiem.config import load_settings
    from hiem.security import MemoryNonceCache
    from hiem.security.setup import make_verifier

    material, hiem_sample = floor.hiem_material(tmp_path, CONSUMER, elliptic)
    message = floor.FloorMessage(material, CONSUMER)
    message.build("0f5a3c2e-0000-4000-8000-000000000001", 1)  # the template is reused: sign it twice
    body = message.build("0f5a3c2e-0000-4000-8000-000000000002", 2)

    covered = floor.verify(body, material.cert_pem)
    assert set(floor.referenced_tags(hiem_sample)) <= set(covered)

    env = {"HIEM_DEV": "1", "HIEM_DEV_DIR": str(tmp_path / "dev-identity")}
    if elliptic:
        env.update(HIEM_SIGNING_KEY=str(tmp_path / "ec-identity" / "key.pem"),
                   HIEM_SIGNING_CERT=str(tmp_path / "ec-identity" / "cert.pem"))
    result = make_verifier(load_settings(env), MemoryNonceCache()).verify(etree.fromstring(body))
    assert result.authenticated
    assert set(covered) <= result.signed_parts

    tampered = body.replace(b"000000000002</nhin:SubscriptionId>", b"000000000003</nhin:SubscriptionId>", 1)
    assert tampered != body
    with pytest.raises(xmlsec.Error):
        floor.verify(tampered, material.cert_pem)


def test_measuring_processes_import_nothing_from_hiem() -> None:
    code = ("import sys, aiohttp, bench.signing_floor; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'hiem'))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    assert run.stdout.strip() == "[]"
