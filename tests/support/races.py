"""Races: real threads released together by a barrier, with bounded waits everywhere.

- `race(count, work)` runs `work(index)` in *count* threads and returns what each returned — or the
  exception it raised, as an object, never swallowed — in index order (`failures(results)` lists
  those). For HTTP calls against a real server, for test-client requests, or for work that manages
  its own app context and transactions (`context=app.app_context` enters one per thread before the
  barrier).
- `race_transactions(app, work, racers=n)` races service calls: each racer runs `work(index)` in its
  own app context (so its own session and database connection) inside one `transaction()` that
  commits for real, and its outcome is "ok" or the class name of the refusal it raised (by default
  any DomainError); anything else fails the test.

    outcomes = race_transactions(app, lambda _index: redemption.redeem(...), racers=32)
    assert outcomes.count("ok") == 1

A racer that has not finished within *timeout* seconds fails the test ("hung").
"""

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from marketplace.db import db, transaction
from marketplace.errors import DomainError

BARRIER_TIMEOUT = 30.0  # how long the first racer waits for the last to line up


def race(count: int, work: Callable[[int], object], *, context: Callable[[], AbstractContextManager] | None = None,
         timeout: float = 120.0) -> list:
    """Run work(index) in *count* threads released together; return results (or exceptions) in index order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def runner(index):
        try:
            with context() if context is not None else nullcontext():
                barrier.wait(timeout=min(BARRIER_TIMEOUT, timeout))
                results[index] = work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            results[index] = error

    threads = [threading.Thread(target=runner, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    assert hung == 0, f"{hung} of {count} racers hung past {timeout}s"
    return results


def failures(results: list) -> list[str]:
    """The exceptions among race() results, as reprs (an empty list when every racer returned)."""
    return [repr(result) for result in results if isinstance(result, BaseException)]


def race_transactions(app, work: Callable[[int], object], *, racers: int,
                      refusals: tuple[type[BaseException], ...] = (DomainError,), timeout: float = 180.0) -> list[str]:
    """Race *racers* service calls, each in its own app context and transaction; return their outcomes.

    An outcome is "ok" (committed) or the class name of the refusal in *refusals* it raised (rolled
    back); any other exception fails the test.
    """

    def attempt(index: int) -> str:
        try:
            with transaction():
                work(index)
            return "ok"
        except refusals as refusal:
            return type(refusal).__name__
        finally:
            db.session.remove()

    outcomes = race(racers, attempt, context=app.app_context, timeout=timeout)
    unexpected = failures(outcomes)
    assert unexpected == [], unexpected
    return outcomes
