"""core/retries.py: the one retry policy of the remote client and the stores, sync and async."""

import asyncio
import email.utils
import time

import pytest

from jinav3.retries import RetryPolicy, retry_after_seconds


def test_delays_double_with_jitter_up_to_the_cap_and_retry_after_wins():
    policy = RetryPolicy(retries=5, backoff=0.1, max_backoff=0.25)
    for attempt, (low, high) in enumerate([(0.05, 0.1), (0.1, 0.2), (0.125, 0.25), (0.125, 0.25)]):
        assert all(low <= policy.delay(attempt) <= high for _ in range(20))
    assert policy.delay(0, retry_after=0.2) == 0.2 and policy.delay(0, retry_after=99) == 0.25  # capped


def test_call_retries_transient_errors_only():
    sleeps, results = [], iter([TimeoutError("t"), TimeoutError("t"), "ok"])

    def flaky():
        r = next(results)
        if isinstance(r, Exception):
            raise r
        return r

    policy = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.01)
    assert policy.call(flaky, what="w", transient=lambda e: isinstance(e, TimeoutError), sleep=sleeps.append) == "ok"
    assert len(sleeps) == 2
    with pytest.raises(ValueError):
        policy.call(lambda: (_ for _ in ()).throw(ValueError("no")), what="w", transient=lambda e: False)


def test_acall_gives_up_after_the_last_retry(caplog):
    calls = []

    async def down():
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        asyncio.run(RetryPolicy(retries=2, backoff=0, max_backoff=0).acall(down, what="w", transient=lambda e: True))
    assert len(calls) == 3 and len([r for r in caplog.records if "retry" in r.getMessage()]) == 2


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("1.5") == 1.5 and retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None and retry_after_seconds("-3") == 0.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(later) <= 31
