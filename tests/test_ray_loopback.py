"""A local Ray started for a job listens on loopback only.

Runs in a fresh process (this one may hold the suite's own Ray session): the job's
``on_clock`` hook lists every listening socket of the driver and its child processes
(GCS, raylet, agents, actors) while the job runs.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ray")
pytest.importorskip("psutil")

pytestmark = pytest.mark.ray

SCRIPT = textwrap.dedent("""
    import json, psutil
    import numpy as np
    import stalesync as ss

    seen = []

    def worker(ctx):
        while ctx.clock_count < 3:
            ctx.inc("t", [0], np.ones((1, 1)))
            ctx.clock()

    def listening(w, i, o):
        if seen:
            return
        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        seen.append([p.name(), c.laddr.ip, c.laddr.port])
            except psutil.Error:
                pass

    ss.run(worker, [ss.TableSpec("t", 1, 1)], workers=2, iterations=3, runtime="ray",
           on_clock=listening)
    print("LISTENING", json.dumps(seen))
""")


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_a_local_ray_job_listens_on_loopback_only():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("LISTENING"))
    sockets = json.loads(line.split(" ", 1)[1])
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # the scan saw Ray's own servers
    exposed = [s for s in sockets if not _loopback(s[1])]
    assert exposed == [], f"listening beyond loopback: {exposed}"
