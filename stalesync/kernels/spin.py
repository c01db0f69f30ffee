"""Busy-waiting without the GIL: how a thread waits a few microseconds for another.

Waking a thread that sleeps on a lock costs the operating system's wake-up latency: a lock
ping-pong between two threads measured 91 us a round trip on this project's 2-core
machine (a virtual machine: an idle core must be woken), against 2.7 us when the waiter
polls a flag in a compiled loop that holds no GIL. A hand-off every clock or round pays
that latency twice, more than the work of a short round. So a waiter first polls here for
a bounded number of iterations and only then blocks (the lock stays the synchronisation;
the poll only spots early that it will not block).
"""

from __future__ import annotations

import numba

SPIN_POLLS = 300_000  # ~100 us of polling before a wait blocks


@numba.njit(cache=True, nogil=True)
def spin_until(counter, target, iterations):  # pragma: no cover - compiled
    """Poll ``counter[0]`` until it reaches ``target`` (True) or ``iterations`` polls
    pass (False). Releases the GIL: another thread can post meanwhile."""
    for _ in range(iterations):
        if counter[0] >= target:
            return True
    return counter[0] >= target


@numba.njit(cache=True, nogil=True)
def spin_all(counters, target, iterations):  # pragma: no cover - compiled
    """Poll until every ``counters[i]`` reaches ``target`` (True) or ``iterations`` polls
    pass (False): a barrier of threads that each count their own arrivals (one writer per
    slot, so no atomic operation is needed)."""
    for _ in range(iterations):
        done = True
        for i in range(counters.shape[0]):
            if counters[i] < target:
                done = False
                break
        if done:
            return True
    return False
