"""The serving hot path under load: PickMerchants against R server processes on one Redis.

Starts its own redis-server, R real server processes sharing it with an active plan of a realistic day,
and load generators in separate processes (grpc.aio clients). Measures, in one run:
  rps       PickMerchants at full load (closed loop, `concurrency` calls in flight);
  echo_rps  a bare grpc.aio echo server (R processes, same message types) under the same load generator:
            the floor of Python gRPC on this machine; ratio = rps / echo_rps;
  echo_p50_ms, echo_p99_ms  the echo's latency at 70% of echo_rps, measured as p50_ms and p99_ms are:
            the floor's own tail at the same relative load;
  p50_ms, p99_ms  PickMerchants latency at 70% of rps (open loop: latency counts from each call's
            scheduled start, so queueing is not hidden), and alloc_p99_ms for GetMerchantAllocation
            calls mixed into that load;
  server_cpu_ms_per_pick, redis_cpu_ms_per_pick, client_cpu_ms_per_pick  CPU (user + system) each group
            of processes spent per call at full load, and echo_server_cpu_ms_per_call for the echo: the
            cost of a pick, steadier than rps on this machine (its speed moved the echo from 2,071 to
            3,750 calls/s within one hour);
  over_delivered  impressions beyond any line's plan, from the Redis counters against the plan (must be 0);
  errors, degraded, empty_share (answers with no merchant: the hour's plan used up or paced for later);
  latency_curve  with --rates R1,R2,...: the same open-loop measurement at each of those rates (calls/s),
            each in an hour of its own, after the 70 % phase: where the tail starts to grow.

    python -m bench.serve --duration 20 --concurrency 64 --replicas 2 --json
    python -m bench.serve --duration 15 --rates 600,1000,1400,2000 --json     # + a latency curve
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any, cast

import grpc
import numpy as np
import psutil
import redis

from allocator.plan_codec import PlanView, decode_plan
from allocator.serving.lines import PlanLines
from allocator.store.embedded import EmbeddedRedis
from allocator.store.keys import Keys
from allocator_client import AllocatorClient
from allocator_client.daygen import generate_day
from allocator_client.scenario import apply_scenario
from trafficalloc.v1 import allocator_pb2 as pb
from trafficalloc.v1 import allocator_pb2_grpc as pb_grpc

PREFIX = "bench"
MAX_RATES = 18  # one hour of the day each, before the 70 % phase's hour (19:00)
HOUR = 20  # the evening peak
PICK_COUNT = 3


def start_server(
    tmp: pathlib.Path, name: str, redis_url: str, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """A server process with the defaults (ALLOCATOR_* in this environment is not passed on); extra: more
    command-line settings, such as ("--workers", "8")."""
    port_file = tmp / f"{name}.port"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOCATOR_")}
    args = ["--listen", "127.0.0.1:0", "--port-file", str(port_file), "--redis-url", redis_url]
    args += ["--key-prefix", PREFIX, "--log-level", "WARNING", *extra]
    with open(tmp / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "allocator.server", *args], env=env, stderr=log)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start: see {tmp / f'{name}.log'}")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port_file.read_text()}"


# ---- the echo server: the floor of Python gRPC, same messages, grpc.aio --------------------------


async def _echo_pick(request: pb.PickMerchantsRequest, context: Any) -> pb.PickMerchantsResponse:
    return pb.PickMerchantsResponse(date="2026-12-01", hour=request.count)


def _echo_main(port_q: Any) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            _echo_pick,
            request_deserializer=pb.PickMerchantsRequest.FromString,
            response_serializer=pb.PickMerchantsResponse.SerializeToString,
        )
        service = pb.DESCRIPTOR.services_by_name["AllocatorService"].full_name
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"PickMerchants": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_q.put(port)
        await server.wait_for_termination()

    asyncio.run(run())


# ---- load generators (separate processes) ------------------------------------------------------


def _requests(slots: list[tuple[int, str]], weights: list[float], when: dt.datetime, seed: int) -> Any:
    rng = random.Random(seed)
    ts = pb.PickMerchantsRequest().time
    ts.FromDatetime(when)
    pid = os.getpid()
    n = 0
    while True:
        channel, region = rng.choices(slots, weights)[0]
        n += 1
        yield pb.PickMerchantsRequest(
            request_id=f"b{pid}-{n}",
            channel=pb.Channel.ValueType(channel),
            region=region,
            time=ts,
            count=PICK_COUNT,
        )


def _closed_loop(
    targets: list[str],
    conc: int,
    duration: float,
    slots: Any,
    weights: Any,
    when: Any,
    seed: int,
    out: Any,
    go: Any,
) -> None:
    """`conc` calls in flight for a second of warm-up, then "warm" on `out`; calls are counted (and this
    process's CPU clocked) from when the parent sets `go` (every generator warm) for `duration` seconds."""

    async def run() -> dict[str, Any]:
        channels = [grpc.aio.insecure_channel(t) for t in targets]
        stubs = [pb_grpc.AllocatorServiceStub(ch) for ch in channels]
        gen = _requests(slots, weights, when, seed)
        done = errors = degraded = empty = 0
        cpu_start = 0.0
        codes: dict[str, int] = {}
        warm_end = time.perf_counter() + 1.0
        said_warm = False
        end = float("inf")  # set when counting starts
        give_up = warm_end + 60.0  # the parent never said go (another generator died): stop anyway

        async def worker(i: int) -> None:
            nonlocal done, errors, degraded, empty, cpu_start, said_warm, end
            stub = stubs[i % len(stubs)]
            while True:
                now = time.perf_counter()
                if now >= end or now >= give_up:
                    return
                if now >= warm_end and not said_warm:
                    said_warm = True
                    out.put("warm")
                if said_warm and not cpu_start and go.is_set():
                    cpu_start = time.process_time()  # the whole measured window, same as the servers'
                    end = now + duration
                counted = bool(cpu_start)
                code = ""
                try:
                    r = await stub.PickMerchants(next(gen), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                if counted:
                    done += 1
                    if code:
                        errors += 1
                        codes[code] = codes.get(code, 0) + 1
                    elif r.degraded:
                        degraded += 1
                    elif not r.merchants:
                        empty += 1

        await asyncio.gather(*(worker(i) for i in range(conc)))
        if not said_warm:  # no call reached the end of the warm-up: say so, so the parent does not wait
            out.put("warm")
        cpu = time.process_time() - cpu_start if cpu_start else 0.0
        for ch in channels:
            await ch.close()
        counts = {"calls": done, "errors": errors, "degraded": degraded, "empty": empty}
        return {**counts, "codes": codes, "cpu_s": cpu}

    out.put(asyncio.run(run()))


def _open_loop(
    targets: list[str],
    rate: float,
    duration: float,
    slots: Any,
    weights: Any,
    when: Any,
    merchants: list[str],
    alloc_every: int,
    seed: int,
    out: Any,
) -> None:
    async def run() -> dict[str, Any]:
        channels = [grpc.aio.insecure_channel(t) for t in targets]
        stubs = [pb_grpc.AllocatorServiceStub(ch) for ch in channels]
        gen = _requests(slots, weights, when, seed)
        rng = random.Random(seed + 1)
        lat: list[float] = []
        alloc_lat: list[float] = []
        errors = degraded = empty = 0
        codes: dict[str, int] = {}
        tasks = []

        async def one(i: int, scheduled: float, alloc: bool) -> None:
            nonlocal errors, degraded, empty
            stub = stubs[i % len(stubs)]
            try:
                if alloc:
                    await stub.GetMerchantAllocation(
                        pb.GetMerchantAllocationRequest(
                            merchant_id=rng.choice(merchants), date=when.date().isoformat()
                        ),
                        timeout=10,
                    )
                    alloc_lat.append(time.perf_counter() - scheduled)
                else:
                    r = await stub.PickMerchants(next(gen), timeout=10)
                    lat.append(time.perf_counter() - scheduled)
                    degraded += int(r.degraded)
                    empty += int(not r.merchants)
            except grpc.aio.AioRpcError as exc:
                errors += 1
                codes[exc.code().name] = codes.get(exc.code().name, 0) + 1

        start = time.perf_counter() + 0.5
        cpu_start = time.process_time()
        total = int(rate * duration)
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i, scheduled, alloc_every > 0 and i % alloc_every == 0)))
        await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu_start
        for ch in channels:
            await ch.close()
        return {
            "cpu_s": cpu,
            "lat": lat,
            "alloc_lat": alloc_lat,
            "errors": errors,
            "codes": codes,
            "degraded": degraded,
            "empty": empty,
        }

    out.put(asyncio.run(run()))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def closed_load(
    targets: list[str],
    conc: int,
    duration: float,
    procs: int,
    slots: Any,
    weights: Any,
    when: dt.datetime,
    watch: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """Closed-loop load from `procs` generator processes; `watch` names groups of pids (servers, redis)
    whose CPU per call is reported, over the same window the calls are counted in (from `go`)."""
    if procs < 1:
        raise ValueError("closed_load needs at least one load generator process")
    watch = watch or {}
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    go = ctx.Event()
    ps = [
        ctx.Process(
            target=_closed_loop, args=(targets, conc // procs, duration, slots, weights, when, i, q, go)
        )
        for i in range(procs)
    ]
    for p in ps:
        p.start()
    items = [q.get()]
    while sum(1 for x in items if x == "warm") < len(ps):
        items.append(q.get())
    before = {name: cpu_seconds(pids) for name, pids in watch.items()}
    go.set()
    results = [x for x in items if x != "warm"]
    while len(results) < len(ps):
        results.append(q.get())
    used = {name: cpu_seconds(pids) - before.get(name, 0.0) for name, pids in watch.items()}
    for p in ps:
        p.join()
    calls = sum(r["calls"] for r in results)
    per_call = {f"{name}_cpu_ms_per_call": round(1000 * t / max(1, calls), 3) for name, t in used.items()}
    per_call["client_cpu_ms_per_call"] = round(1000 * sum(r["cpu_s"] for r in results) / max(1, calls), 3)
    return {
        **per_call,
        "rps": calls / duration,
        "calls": calls,
        "errors": sum(r["errors"] for r in results),
        "error_codes": dict(sum((Counter(r["codes"]) for r in results), Counter())),
        "degraded": sum(r["degraded"] for r in results),
        "empty": sum(r["empty"] for r in results),
    }


def open_load(
    targets: list[str],
    rate: float,
    duration: float,
    procs: int,
    slots: Any,
    weights: Any,
    when: dt.datetime,
    merchants: list[str],
    watch: dict[str, list[int]] | None = None,
    alloc_every: int = 20,
) -> dict[str, Any]:
    """Open-loop load at `rate` calls a second, every `alloc_every`-th a GetMerchantAllocation (0: none);
    `watch` as closed_load's (CPU per call by group, over the generators' whole run)."""
    watch = watch or {}
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [
        ctx.Process(
            target=_open_loop,
            args=(targets, rate / procs, duration, slots, weights, when, merchants, alloc_every, 100 + i, q),
        )
        for i in range(procs)
    ]
    before = {name: cpu_seconds(pids) for name, pids in watch.items()}
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    used = {name: cpu_seconds(pids) - before.get(name, 0.0) for name, pids in watch.items()}
    for p in ps:
        p.join()
    lat = np.array([x for r in results for x in r["lat"]]) * 1000
    alloc = np.array([x for r in results for x in r["alloc_lat"]]) * 1000
    return {
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "alloc_p50_ms": float(np.percentile(alloc, 50)) if alloc.size else None,
        "alloc_p99_ms": float(np.percentile(alloc, 99)) if alloc.size else None,
        "errors": sum(r["errors"] for r in results),
        "error_codes": dict(sum((Counter(r["codes"]) for r in results), Counter())),
        "degraded": sum(r["degraded"] for r in results),
        "calls": int(lat.size + alloc.size),
        "empty": sum(r["empty"] for r in results),
        **{
            f"{name}_cpu_ms_per_call": round(1000 * t / max(1, lat.size + alloc.size), 3)
            for name, t in used.items()
        },
        "client_cpu_ms_per_call": round(
            1000 * sum(r["cpu_s"] for r in results) / max(1, lat.size + alloc.size), 3
        ),
    }


# ---- the audit: counters against the plan --------------------------------------------------------


def audit(r: redis.Redis, plan_ids: list[str], date: dt.date) -> dict[str, int]:
    """Impressions beyond any line's plan, nodes past their capacity, redemptions past their points due.

    With several plans (re-plans during the run) a line's plan is the largest cap any of them gave it:
    every pick is checked atomically against the caps of the plan it was served from, and the counters
    only grow, so a count above every plan's cap is an impression no plan allowed.
    """
    keys = Keys(PREFIX)
    caps: dict[tuple[int, int, str], dict[str, int]] = {}
    limits: dict[tuple[int, int, str], int] = {}
    due: dict[str, int] = {}

    def cap_of(node_id: tuple[int, int, str], fields: list[str], counts: list[int]) -> None:
        line_caps = caps.setdefault(node_id, {})
        for f, x in zip(fields, counts, strict=True):
            line_caps[f] = max(line_caps.get(f, 0), x)

    for plan_id in plan_ids:
        lines = PlanLines(plan_id, PlanView(decode_plan(cast(bytes, r.get(keys.plan_data(plan_id))))))
        s = lines.view.s
        regions = s.regions.tolist()
        # a re-plan keeps what each line had been shown before it (its cap where it gives nothing more)
        for held in lines.held.values():
            for c, h, rg, f, x in held:
                cap_of((c, h, rg), [f], [x])
        for node in range(s.node_capacity.size):
            node_id = (int(s.node_channel[node]), int(s.node_hour[node]), regions[int(s.node_region[node])])
            nl = lines.lines(node)
            cap_of(node_id, list(nl.fields), nl.cap.tolist())
            limits[node_id] = max(limits.get(node_id, 0), int(lines.node_limit[node]))
        for rid, b in zip(s.demand_redemption.tolist(), lines.demand_budget.tolist(), strict=True):
            due[f"p:{rid}"] = max(due.get(f"p:{rid}", 0), int(b))
    over = nodes_over = impressions = 0
    # every counter of the date, including any on a node no plan has (all of it would be over)
    prefix = keys.serving_node_prefix(date.isoformat())
    for key in r.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=1000):
        c, h, rg = key.decode()[len(prefix) :].split(":", 2)
        caps.setdefault((int(c), int(h), rg), {})
    for node_id, line_caps in caps.items():
        raw = cast(dict[bytes, bytes], r.hgetall(keys.serving_node(date.isoformat(), *node_id)))
        counts = {k.decode(): int(v) for k, v in raw.items()}
        total = counts.pop("_n", 0)
        impressions += total
        nodes_over += int(total > limits.get(node_id, 0))
        over += sum(max(0, x - line_caps.get(f, 0)) for f, x in counts.items())
    raw_budget = cast(dict[bytes, bytes], r.hgetall(keys.serving_budget(date.isoformat())))
    budget = {k.decode(): int(v) for k, v in raw_budget.items()}
    budget_over = sum(1 for f, x in budget.items() if f.startswith("p:") and x > due.get(f, 0))
    return {
        "over_delivered": over,
        "nodes_over_capacity": nodes_over,
        "redemptions_over_due": budget_over,
        "impressions_counted": impressions,
    }


def parse_rates(text: str) -> list[float]:
    """--rates: comma-separated calls a second, each > 0, at most MAX_RATES of them ("" : none)."""
    if not text.strip():
        return []
    try:
        rates = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates: not a list of numbers: {text!r}") from None
    if len(rates) > MAX_RATES or not all(np.isfinite(r) and r > 0 for r in rates):
        raise argparse.ArgumentTypeError(f"--rates: 1 to {MAX_RATES} rates, each above 0: {text!r}")
    return rates


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--load-procs", type=int, default=2, help="load generator processes")
    p.add_argument("--merchants", type=int, default=6_000)
    p.add_argument("--free-merchants", type=int, default=2_000)
    p.add_argument("--regions", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=0, help="the servers' worker threads (0: their default)")
    p.add_argument("--rates", type=parse_rates, default=[], help="also a latency curve at these calls/s")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    a = p.parse_args(argv)
    date = dt.date(2026, 12, 1)
    when = dt.datetime(date.year, date.month, date.day, HOUR, 30, tzinfo=dt.UTC)
    regions = tuple(f"r{i:02d}" for i in range(a.regions))
    procs: list[subprocess.Popen[bytes]] = []
    echo_procs: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = pathlib.Path(tmp_name)
        red = EmbeddedRedis(tmp / "redis").start()
        try:
            extra = ("--workers", str(a.workers)) if a.workers else ()
            servers = [start_server(tmp, f"s{i}", red.url, extra) for i in range(a.replicas)]
            procs = [s[0] for s in servers]
            targets = [s[1] for s in servers]
            with AllocatorClient(targets[0], timeout=600) as client:
                client.wait_until_serving(60)
                scenario = generate_day(
                    date, merchants=a.merchants, free_merchants=a.free_merchants, regions=regions,
                    seed=a.seed, rules=client.get_rules(),
                )  # fmt: skip
                apply_scenario(client, scenario)
                plan = client.solve(pb.SolveRequest(start_date=date.isoformat())).plan
                merchants = sorted({r.merchant_id for r in scenario.redemptions})
            slots_w: dict[tuple[int, str], float] = {}
            for n in scenario.inventory:
                if n.hour == HOUR:
                    slots_w[(int(n.channel), n.region)] = float(n.capacity_impressions)
            slots, weights = list(slots_w), list(slots_w.values())

            assert red.process is not None
            watch = {"server": [p.pid for p in procs], "redis": [red.process.pid]}
            full = closed_load(targets, a.concurrency, a.duration, a.load_procs, slots, weights, when, watch)
            paced = open_load(
                # an hour of its own (19:30), so the paced phase meets fresh pace allowances as real
                # traffic does, not the hour the full-load phase just used up to its pace
                targets,
                0.7 * full["rps"],
                a.duration,
                a.load_procs,
                slots,
                weights,
                when - dt.timedelta(hours=1),
                merchants,
                watch,
            )
            curve = [
                # hours 18, 17, ...: fresh pace allowances for each rate, as for the 70 % phase
                open_load(
                    targets,
                    rate,
                    a.duration,
                    a.load_procs,
                    slots,
                    weights,
                    when - dt.timedelta(hours=2 + j),
                    merchants,
                    watch,
                )
                for j, rate in enumerate(a.rates)
            ]
            r = redis.Redis.from_url(red.url)
            checked = audit(r, [plan.plan_id], date)
            r.close()
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=60)
            procs = []

            ctx = mp.get_context("spawn")
            q = ctx.Queue()
            for _ in range(a.replicas):
                ep = ctx.Process(target=_echo_main, args=(q,), daemon=True)
                ep.start()
                echo_procs.append(ep)
            echo_targets = [f"127.0.0.1:{q.get()}" for _ in echo_procs]
            echo_pids = [ep.pid for ep in echo_procs if ep.pid is not None]
            echo = closed_load(
                echo_targets,
                a.concurrency,
                a.duration,
                a.load_procs,
                slots,
                weights,
                when,
                {"server": echo_pids},
            )
            # the floor's own tail: the echo at 70 % of its own full load, by the same open-loop generator
            # (PickMerchants alone: the echo has no GetMerchantAllocation)
            echo_paced = open_load(
                echo_targets,
                0.7 * echo["rps"],
                a.duration,
                a.load_procs,
                slots,
                weights,
                when,
                merchants,
                {"server": echo_pids},
                alloc_every=0,
            )
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            for ep in echo_procs:
                ep.terminate()
            red.stop()
    result = {
        "duration_s": a.duration,
        "concurrency": a.concurrency,
        "replicas": a.replicas,
        "workers": a.workers or None,
        "plan_merchants": a.merchants,
        "plan_arcs": plan.arcs,
        "rps": round(full["rps"], 1),
        "echo_rps": round(echo["rps"], 1),
        "ratio": round(full["rps"] / echo["rps"], 3) if echo["rps"] else None,
        # CPU per call at full load, by process group (ms): steadier than rps on a shared machine
        "server_cpu_ms_per_pick": full["server_cpu_ms_per_call"],
        "redis_cpu_ms_per_pick": full["redis_cpu_ms_per_call"],
        "client_cpu_ms_per_pick": full["client_cpu_ms_per_call"],
        "echo_server_cpu_ms_per_call": echo["server_cpu_ms_per_call"],
        "echo_client_cpu_ms_per_call": echo["client_cpu_ms_per_call"],
        # the bare echo at 70 % of echo_rps, measured as p50_ms / p99_ms are: the floor's tail at that load
        "echo_p50_ms": echo_paced["p50_ms"],
        "echo_p99_ms": echo_paced["p99_ms"],
        "echo_paced_rps": round(0.7 * echo["rps"], 1),
        "echo_paced_server_cpu_ms_per_call": echo_paced["server_cpu_ms_per_call"],
        "echo_paced_client_cpu_ms_per_call": echo_paced["client_cpu_ms_per_call"],
        "p50_ms": paced["p50_ms"],
        "p99_ms": paced["p99_ms"],
        "alloc_p50_ms": paced["alloc_p50_ms"],
        "alloc_p99_ms": paced["alloc_p99_ms"],
        "paced_rps": round(0.7 * full["rps"], 1),
        # the same at 70% load (open loop; GetMerchantAllocation included): a call costs more at lower load
        "paced_server_cpu_ms_per_call": paced["server_cpu_ms_per_call"],
        "paced_redis_cpu_ms_per_call": paced["redis_cpu_ms_per_call"],
        "paced_client_cpu_ms_per_call": paced["client_cpu_ms_per_call"],
        "errors": full["errors"] + paced["errors"] + sum(c["errors"] for c in curve),
        "echo_errors": echo["errors"] + echo_paced["errors"],
        "error_codes": dict(
            sum((Counter(x["error_codes"]) for x in [paced, *curve]), Counter(full["error_codes"]))
        ),
        "degraded": full["degraded"] + paced["degraded"] + sum(c["degraded"] for c in curve),
        "empty_share": round(full["empty"] / max(1, full["calls"]), 4),
        "paced_empty_share": round(paced["empty"] / max(1, paced["calls"]), 4),
        "latency_curve": [
            {
                "rate": rate,
                **{
                    key: c[key]
                    for key in (
                        "p50_ms",
                        "p99_ms",
                        "alloc_p99_ms",
                        "server_cpu_ms_per_call",
                        "redis_cpu_ms_per_call",
                        "client_cpu_ms_per_call",
                        "calls",
                        "errors",
                        "error_codes",
                        "degraded",
                    )
                },
                # (each rate runs in an hour of its own: empty answers are cheap and would hide in p99)
                "empty_share": round(c["empty"] / max(1, c["calls"]), 4),
            }
            for rate, c in zip(a.rates, curve, strict=True)
        ],
        **checked,
    }
    if not a.json:
        print(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
