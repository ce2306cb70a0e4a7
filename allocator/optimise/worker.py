"""Solves in a child process, so a replica keeps serving while it solves.

OR-Tools' min-cost flow holds the GIL for the whole solve (measured: a thread that ticks every
millisecond ticked once during a 3.4 s solve), so a solve in the server process stalls every RPC of that
replica, PickMerchants included. A SolverProcess runs solve() in one long-lived spawned child (warm
imports) and forwards its phase events back, so progress streaming still works. The child runs at a
lower CPU priority (nice +10): a solve or re-plan is background work, picks are the hot path, and on a
small machine the two compete for the same cores.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from allocator.domain import Plan, Problem, SolveParams
from allocator.errors import Unavailable
from allocator.optimise.paid_warm import WarmPrices

logger = logging.getLogger(__name__)

_events: Any = None  # the child's end of the event queue
PARENT_POLL_S = 0.5  # how often the child checks that the server is still there
EVENTS_WAIT_S = 10.0  # how long a finished solve waits for its phase events to be forwarded
_END = ""  # the last event of a solve: every phase of it has been forwarded
NICENESS = 10  # added to the child's nice value: the serving threads of the replica come first


def _init(events: Any, parent: int) -> None:
    global _events
    _events = events
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    try:
        os.nice(NICENESS)
    except OSError as exc:  # not permitted here: solve at the normal priority
        logger.warning("could not lower the solver's priority: %s", exc)
    import allocator.optimise  # noqa: F401  (warm: the first solve should not pay for the imports)
    from allocator.optimise.paid_warm import prepare_or_log

    prepare_or_log()  # ... nor for loading the network simplex's machine code


def _exit_with(parent: int) -> None:
    """Exit once the server is gone. A server killed with SIGKILL cannot close the pool, and the child
    would wait forever on its call queue (it holds that pipe's write end too), holding its memory."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _ready() -> int:
    return os.getpid()


def _run(token: str, problem: Problem, params: SolveParams, warm: WarmPrices | None) -> Plan:
    from allocator.optimise import solve

    try:
        return solve(problem, params, on_phase=lambda phase: _events.put((token, phase)), warm=warm)
    finally:  # after the solve's phases on the same queue: the parent waits for it before it returns
        _events.put((token, _END))


def _log_warm_failure(future: Future[int]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("the solver process did not start: %s", future.exception())


class SolverProcess:
    """One child process that runs solves one at a time (calls from several threads queue up)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._events: Any = None
        # per running solve: where its phases go, and set once its last phase has been forwarded
        self._calls: dict[str, tuple[Callable[[str], None] | None, threading.Event]] = {}

    def _ensure(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                ctx = mp.get_context("spawn")
                self._events = ctx.Queue()
                self._pool = ProcessPoolExecutor(
                    max_workers=1, mp_context=ctx, initializer=_init, initargs=(self._events, os.getpid())
                )
                threading.Thread(
                    target=self._forward, args=(self._events,), name="solver-events", daemon=True
                ).start()
            return self._pool

    def _forward(self, events: Any) -> None:
        while True:
            item = events.get()
            if item is None:
                return
            token, phase = item
            call = self._calls.get(token)
            if call is None:
                continue
            sink, done = call
            if phase == _END:
                done.set()
            elif sink is not None:
                sink(phase)

    def warm(self) -> Future[int]:
        """Start the child now, without waiting: its interpreter start and imports (0.31-0.34 s on
        this machine) are then not paid by the first Solve after a restart. The future gives its pid."""
        future = self._ensure().submit(_ready)
        future.add_done_callback(_log_warm_failure)
        return future

    def solve(
        self,
        problem: Problem,
        params: SolveParams,
        on_phase: Callable[[str], None] | None = None,
        warm: WarmPrices | None = None,
    ) -> Plan:
        token = uuid.uuid4().hex
        done = threading.Event()
        self._calls[token] = (on_phase, done)
        try:
            plan = self._ensure().submit(_run, token, problem, params, warm).result()
            # the result and the phase events come through different pipes: the caller's progress stream
            # gets every phase before the plan
            if not done.wait(timeout=EVENTS_WAIT_S):
                logger.warning("the solver's last phase events did not arrive within %.0f s", EVENTS_WAIT_S)
            return plan
        except BrokenProcessPool as exc:  # the child died (killed, out of memory): start afresh next time
            logger.error("the solver process died: %s", exc)
            with self._lock:
                self._pool = None
            raise Unavailable("the solver process died during the solve; retry") from exc
        finally:
            self._calls.pop(token, None)

    def close(self) -> None:
        with self._lock:
            pool, events, self._pool = self._pool, self._events, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            events.put(None)
