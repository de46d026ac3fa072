"""Bounded read-ahead: the next batches are read in a thread while the model trains."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()


def prefetch(keys: Iterable[T], read: Callable[[T], R], depth: int = 2) -> Iterator[R]:
    """``read(k)`` for each key in order, at most ``depth`` ahead of the consumer.

    File reads release the GIL, so they overlap the model step; an exception in ``read``
    is raised in the consumer at the item it belongs to. Stopping early stops the thread.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for key in keys:
                if stop.is_set():
                    return
                out.put((read(key), None))
        except BaseException as exc:  # handed over to the consumer
            out.put((None, exc))
        out.put((_DONE, None))

    thread = threading.Thread(target=work, daemon=True, name="medsight-prefetch")
    thread.start()
    try:
        while True:
            value, exc = out.get()
            if exc is not None:
                raise exc
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                out.get_nowait()
            except queue.Empty:
                thread.join(0.05)
