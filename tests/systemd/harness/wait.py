"""Bounded waits: every wait has a timeout and says what it waited for."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out. An AssertionError, so pytest shows it as a failure."""


def wait_for(
    what: str,
    check: Callable[[], T],
    timeout: float,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Calls `check` until it returns something truthy and returns that.

    Gives up after `timeout` seconds with a WaitTimeout naming `what`, the last error
    `check` raised (if any), and `describe()` (e.g. the unit's status) for context.
    Exceptions of the `fatal` types end the wait at once.
    """
    start = time.monotonic()
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            last_error = None
        except fatal:
            raise
        except Exception as e:  # noqa: BLE001 - reported when the wait runs out
            value = None  # type: ignore[assignment]
            last_error = e
        if value:
            return value
        if time.monotonic() - start >= timeout:
            message = f"timed out after {timeout:.0f} s waiting for {what}"
            if last_error is not None:
                message += f"\nlast error: {last_error!r}"
            if describe is not None:
                try:
                    message += "\n" + describe()
                except Exception as e:  # noqa: BLE001
                    message += f"\n(could not describe the state: {e!r})"
            raise WaitTimeout(message)
        time.sleep(interval)
