"""Load shedding and the limit on failed authentications (serving/limits.py)."""

from __future__ import annotations

import logging

import pytest

from serving.limits import Admission, AuthFailures, key_fingerprint


def test_admission_takes_what_fits_and_always_one_request() -> None:
    admission = Admission(100)
    assert admission.try_admit(60) and admission.try_admit(40)
    assert not admission.try_admit(1) and admission.shed == 1
    admission.release(60)
    assert admission.try_admit(50) and not admission.try_admit(20)
    admission.release(40)
    admission.release(50)
    assert admission.in_flight == 0
    assert admission.try_admit(500)  # a page larger than the budget still runs alone
    assert not admission.try_admit(1)


def test_auth_failures_block_a_client_for_the_rest_of_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    failures = AuthFailures(limit=3, window=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="crmscore.serving"):
        for t in (0.0, 10.0, 20.0):
            now[0] = t
            assert failures.retry_after("10.0.0.1") is None
            failures.record("10.0.0.1", "secret-guess")
    assert failures.retry_after("10.0.0.1") == pytest.approx(40.0)
    assert failures.retry_after("10.0.0.2") is None  # other clients are not affected
    now[0] = 60.0  # the first failure left the window
    assert failures.retry_after("10.0.0.1") is None
    assert failures.total == 3
    assert "secret-guess" not in caplog.text
    assert f"key sha256 {key_fingerprint('secret-guess')}, 3 failures" in caplog.text


def test_auth_failures_remember_a_bounded_number_of_clients() -> None:
    failures = AuthFailures(limit=1, window=60, max_clients=2, clock=lambda: 0.0)
    for client in ("a", "b", "c"):
        failures.record(client, None)
    assert failures.retry_after("a") is None  # forgotten, the oldest
    assert failures.retry_after("c") is not None


def test_a_key_fingerprint_is_not_the_key() -> None:
    assert key_fingerprint(None) == "none"
    assert len(key_fingerprint("k")) == 8 and key_fingerprint("k") != key_fingerprint("l")
