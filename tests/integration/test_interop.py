"""Cross-language interop: `make interop` runs the Node.js client (clients/node) against a real server.

The client loads the .proto at runtime with @grpc/proto-loader, so this also checks that the API works
from a second gRPC implementation without generated code. Needs node and npm (npm ci installs the pinned
packages from package-lock.json on the first run).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Every call of the flow, in order, as the client prints it ("ok   <Rpc> ...").
CALLS = [
    "GetRules",
    "PublishInventory",
    "RecordRedemption",  # star
    "RecordRedemption",  # luoma
    "RecordRedemption",  # retry: replayed
    "RecordRedemption",  # bad input: INVALID_ARGUMENT
    "SetEligibility",
    "Solve",
    "GetPlan",
    "GetActivePlan",
    "GetMerchantAllocation",
    "GetNodeAllocation",
    "ListRedemptions",  # page 1
    "ListRedemptions",  # page 2
    "SolveStream",
    "GetPlanReport",
    "ExplainAllocation",
    "CheckAvailability",
    "CancelRedemption",
    "ActivatePlan",
]

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="Node.js interop test needs `node` and `npm` on PATH",
)


def test_node_client_runs_the_whole_flow() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALLOCATOR_", "MAKE"))}
    proc = subprocess.run(
        ["make", "--no-print-directory", "interop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    calls = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert calls == CALLS, output
    assert "PASS interop" in proc.stdout, output
    assert "replayed=true" in proc.stdout
    assert "INVALID_ARGUMENT (3)" in proc.stdout
    assert "phases=READING_INPUTS>" in proc.stdout and ">DONE plan=" in proc.stdout
