"""The thread pool the gRPC server runs its methods in: a fixed set of threads on one SimpleQueue.

grpcio's server takes the pool's `submit(fn, *args)` and adds one done-callback to what it returns; it
does both while holding the server's lock, on its one polling thread, which every call passes through
twice. concurrent.futures.ThreadPoolExecutor pays, per call, for a Future built on a Condition and for
an idle-thread Semaphore (Python-level locks) acquired on submit and released after each call, all of it
serialised on that thread. `RpcPool` keeps only what the server uses: started threads, a C-level queue,
and a future that is a lock and a callback list (docs/serving.md has what it saved).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class CallFuture:
    """What `RpcPool.submit` returns: done-callbacks run once the call has run (in its thread)."""

    __slots__ = ("_callbacks", "_done", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[CallFuture], Any]] = []
        self._done = False

    def add_done_callback(self, callback: Callable[[CallFuture], Any]) -> None:
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        _run_callback(callback, self)

    def done(self) -> bool:
        return self._done

    def _finish(self) -> None:
        with self._lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _run_callback(callback, self)


def _run_callback(callback: Callable[[CallFuture], Any], future: CallFuture) -> None:
    try:
        callback(future)
    except Exception:  # a callback's failure must not take the worker thread down
        logger.exception("a done-callback of an RPC failed")


_STOP = None  # a worker that takes this from the queue exits


class RpcPool:
    """`workers` threads started at once, taking calls from one queue in order."""

    def __init__(self, workers: int, name: str = "rpc") -> None:
        if workers < 1:
            raise ValueError("an RpcPool needs at least one worker")
        self._queue: queue.SimpleQueue[tuple[CallFuture, Callable[..., Any], tuple[Any, ...]] | None]
        self._queue = queue.SimpleQueue()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> CallFuture:
        if self._stopped:
            raise RuntimeError("the RPC pool is shut down")
        future = CallFuture()
        self._queue.put((future, fn, args))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, fn, args = item
            try:
                fn(*args)
            except BaseException:  # grpcio's behaviours handle their own errors; this is a last resort
                logger.exception("an RPC behaviour raised out of the server's handling")
            finally:
                future._finish()

    def shutdown(self, wait: bool = True, timeout_s: float = 10.0) -> None:
        """No new calls; the workers finish what is queued, then exit."""
        if self._stopped:
            return
        self._stopped = True
        for _ in self._threads:
            self._queue.put(_STOP)
        if wait:
            for t in self._threads:
                t.join(timeout_s)
