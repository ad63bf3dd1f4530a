"""Shared pytest setup for the dlog Python compatibility suite.

The broker under test is taken from the environment variable BOOTSTRAP
(host:port).  It must be set: every test errors out with a clear message
otherwise (nothing is skipped silently).

Each test runs under a hard per-test time limit (COMPAT_TEST_TIMEOUT seconds,
default 120) so a misbehaving broker can never hang the suite.
"""

import faulthandler
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compat_helpers as h  # noqa: E402

TEST_TIMEOUT = int(os.environ.get("COMPAT_TEST_TIMEOUT", "120"))


@pytest.fixture(scope="session")
def bootstrap():
    value = os.environ.get("BOOTSTRAP", "").strip()
    if not value:
        pytest.fail(
            "BOOTSTRAP is not set: export BOOTSTRAP=host:port of the Kafka-compatible "
            "broker under test (e.g. BOOTSTRAP=127.0.0.1:9092)",
            pytrace=False,
        )
    return value


@pytest.fixture(autouse=True)
def _require_bootstrap_and_time_limit(bootstrap):
    """Fail (not skip) without BOOTSTRAP; bound every test's wall-clock time."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded the {TEST_TIMEOUT}s time limit")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    # Last resort if the process is stuck somewhere Python cannot interrupt
    # (e.g. inside a C library call): dump stacks and kill the process.
    faulthandler.dump_traceback_later(TEST_TIMEOUT + 60, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def admin(bootstrap):
    return h.admin_client(bootstrap)


@pytest.fixture
def topic_factory(bootstrap, admin):
    """Creates uniquely named topics (via confluent-kafka AdminClient) and deletes them afterwards."""
    created = []

    def make(prefix="t", partitions=1, config=None):
        name = h.unique_topic(prefix)
        h.create_topic(admin, name, partitions, config=config)
        created.append(name)
        return name

    yield make
    if created:
        h.delete_topics_quietly(admin, created)
