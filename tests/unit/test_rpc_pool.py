"""RpcPool (the server's thread pool) and HandlerCache (interceptor wrappers built once per method)."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from allocator.service.rpc_pool import CallFuture, RpcPool
from allocator.service.status import HandlerCache


def test_calls_run_in_the_workers_and_callbacks_follow_each_call() -> None:
    pool = RpcPool(4)
    seen: list[tuple[int, str]] = []
    done: list[int] = []
    lock = threading.Lock()
    all_done = threading.Event()

    def work(i: int) -> None:
        with lock:
            seen.append((i, threading.current_thread().name))

    def finished(i: int) -> Any:
        def cb(future: CallFuture) -> None:
            assert future.done()
            with lock:
                done.append(i)
                if len(done) == 200:
                    all_done.set()

        return cb

    try:
        for i in range(200):
            pool.submit(work, i).add_done_callback(finished(i))
        assert all_done.wait(10)
        assert sorted(i for i, _ in seen) == list(range(200)) and sorted(done) == list(range(200))
        assert {name for _, name in seen} <= {f"rpc-{i}" for i in range(4)}
    finally:
        pool.shutdown()


def test_a_callback_added_after_the_call_ran_runs_at_once() -> None:
    pool = RpcPool(1)
    try:
        future = pool.submit(lambda: None)
        deadline = time.monotonic() + 5
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.001)
        called: list[CallFuture] = []
        future.add_done_callback(called.append)
        assert called == [future]
    finally:
        pool.shutdown()


def test_a_failing_call_or_callback_does_not_kill_the_worker() -> None:
    pool = RpcPool(1)
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("a bug in a behaviour")

    def bad_callback(_future: CallFuture) -> None:
        raise RuntimeError("a bug in a callback")

    try:
        pool.submit(boom).add_done_callback(bad_callback)
        pool.submit(ran.set)
        assert ran.wait(5), "the only worker died with the failing call"
    finally:
        pool.shutdown()


def test_shutdown_lets_queued_calls_finish_then_refuses_new_ones() -> None:
    pool = RpcPool(2)
    count = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal count
        time.sleep(0.001)
        with lock:
            count += 1

    for _ in range(50):
        pool.submit(work)
    pool.shutdown(wait=True)
    assert count == 50
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(work)
    with pytest.raises(ValueError):
        RpcPool(0)


def test_handler_cache_wraps_once_per_handler_and_stays_bounded() -> None:
    cache = HandlerCache(size=4)
    wraps: list[Any] = []

    def wrap(h: Any) -> Any:
        wraps.append(h)
        return ("wrapped", h)

    handler = grpc.unary_unary_rpc_method_handler(lambda r, c: r)
    first = cache.get(handler, "/s/A", wrap)
    assert cache.get(handler, "/s/A", wrap) is first and len(wraps) == 1
    assert cache.get(handler, "/s/B", wrap) is not first and len(wraps) == 2  # one wrapper per method
    others = [grpc.unary_unary_rpc_method_handler(lambda r, c: r) for _ in range(10)]
    for h in others:
        assert cache.get(h, "/s/A", wrap) == ("wrapped", h)  # a new handler is wrapped, never given another's
    assert len(wraps) == 12
    assert len(cache._wrapped) <= 4
