"""allocator.memory on this machine's glibc: large freed blocks go back to the system.

Each case runs in a fresh interpreter (the allocator's state is per process): a freed 4 MiB array first
raises glibc's mmap threshold, then 300 arrays of 1 MiB are allocated between small blocks that stay
alive, and freed. Without the fixed threshold they stay resident (the heap is fragmented) until a trim.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from allocator import memory

glibc = pytest.mark.skipif(memory._libc() is None, reason="not glibc")

SCRIPT = """
import json, sys
import numpy as np, psutil
from allocator import memory
if sys.argv[1] == "fix":
    assert memory.fix_mmap_threshold()
rss = lambda: psutil.Process().memory_info().rss / 2**20
big = np.ones(4 * 2**20 // 8)
del big
base = rss()
blocks = []
for _ in range(300):
    blocks.append(np.ones(2**20 // 8))
    blocks.append(bytearray(1000))
keep = blocks[1::2]
blocks = None
freed = rss() - base
memory.trim()
print(json.dumps({"freed": freed, "trimmed": rss() - base}))
"""


def _retained_mib(case: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, case], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.splitlines()[-1])


@glibc
def test_with_the_threshold_fixed_freed_arrays_leave_at_once() -> None:
    assert _retained_mib("fix")["freed"] < 50


@glibc
def test_a_trim_returns_what_a_fragmented_heap_kept() -> None:
    got = _retained_mib("default")
    assert got["freed"] > 200  # the fragmentation the server guards against, as it happens
    assert got["trimmed"] < 50


def test_a_trim_is_due_once_when_a_marked_plan_is_freed() -> None:
    class Plan:  # stands in for a decoded plan view
        pass

    memory.trim_if_due()  # whatever an earlier test left due
    plan, other = Plan(), Plan()
    memory.trim_when_freed(plan)
    memory.trim_when_freed(other)
    assert not memory.trim_if_due()  # still referenced: nothing to give back yet
    del plan, other
    assert memory.trim_if_due()  # both freed: one trim
    assert not memory.trim_if_due()
