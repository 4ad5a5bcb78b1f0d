"""The shared round-status answer: how old it may be, and who waits for a refresh.

consortium/rounds/status_cache.py. A fake clock and a runner that holds background work
until the test runs it: the rules are tested without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from consortium.rounds.status_cache import StatusCache

TTL = 1.0


class World:
    """A clock, a counting compute function and the background work started so far."""

    def __init__(self) -> None:
        self.now = 100.0
        self.value = "v1"
        self.computed = 0
        self.pending: list[Callable[[], None]] = []
        self.fail = False

    def compute(self) -> str:
        self.computed += 1
        if self.fail:
            raise ConnectionError("database unavailable")
        return self.value

    def cache(self) -> StatusCache:
        return StatusCache(self.compute, clock=lambda: self.now, runner=self.pending.append)

    def run_background(self) -> None:
        while self.pending:
            self.pending.pop(0)()


@pytest.fixture
def world() -> World:
    return World()


def test_an_answer_younger_than_the_ttl_is_reused_without_computing(world):
    cache = world.cache()
    assert cache.get(TTL) == "v1"
    world.value = "v2"
    world.now += TTL - 0.01
    assert cache.get(TTL) == "v1"
    assert world.computed == 1 and world.pending == []


def test_an_aged_answer_is_served_while_one_refresh_runs_off_the_request_path(world):
    cache = world.cache()
    cache.get(TTL)
    world.value = "v2"
    world.now += 1.5 * TTL
    assert [cache.get(TTL) for _ in range(3)] == ["v1"] * 3  # nobody waits for the query
    assert world.computed == 1 and len(world.pending) == 1  # one refresh, not three
    world.run_background()
    assert cache.get(TTL) == "v2" and world.computed == 2


def test_an_answer_twice_the_ttl_old_is_computed_on_the_request_itself(world):
    cache = world.cache()
    cache.get(TTL)
    world.value = "v2"
    world.now += 2 * TTL
    assert cache.get(TTL) == "v2"
    assert world.computed == 2 and world.pending == []


def test_a_failed_refresh_keeps_the_answer_and_the_request_past_the_bound_fails(world):
    cache = world.cache()
    cache.get(TTL)
    world.fail = True
    world.now += 1.5 * TTL
    assert cache.get(TTL) == "v1"
    world.run_background()  # logged, not raised in the refresh thread
    assert cache.get(TTL) == "v1"  # still within 2 x ttl of the last good answer
    world.run_background()
    world.now += TTL
    with pytest.raises(ConnectionError):
        cache.get(TTL)


def test_a_ttl_of_zero_computes_every_answer(world):
    cache = world.cache()
    world.value = "v1"
    cache.get(0)
    world.value = "v2"
    assert cache.get(0) == "v2" and world.computed == 2


def test_threads_that_find_no_answer_compute_it_once_between_them(world):
    release = threading.Event()
    calls = []

    def slow() -> str:
        calls.append(1)
        assert release.wait(timeout=30)
        return "v1"

    cache = StatusCache(slow, clock=lambda: world.now, runner=world.pending.append)
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(cache.get, TTL) for _ in range(8)]
        release.set()
        assert [a.result(timeout=30) for a in answers] == ["v1"] * 8
    assert len(calls) == 1


def test_the_default_runner_refreshes_in_a_thread_of_its_own(world):
    threads = []

    def background() -> str:
        threads.append(threading.current_thread().name)
        return "v2"

    cache = StatusCache(world.compute, background=background, clock=lambda: world.now)
    cache.get(TTL)
    world.now += 1.5 * TTL
    assert cache.get(TTL) == "v1"
    assert cache._executor is not None
    cache._executor.shutdown(wait=True)
    assert threads and threads[0].startswith("status-refresh")
    assert cache.get(TTL) == "v2"
