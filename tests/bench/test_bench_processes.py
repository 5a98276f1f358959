"""What the benchmark reads about the proxy's processes from /proc (bench/processes.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.processes import cpu_seconds, current_rss_mib, process_tree, pss_mib

# A child that burns CPU for 0.4 s, says so and sleeps; and its parent, which only sleeps.
_CHILD = """
import time
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("burnt", flush=True)
time.sleep(30)
"""
_PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1]])
time.sleep(30)
"""


def test_cpu_seconds_counts_the_whole_process_tree():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "burnt"
        tree = process_tree(parent.pid)
        assert len(tree) == 2
        used = cpu_seconds(parent.pid)
        # The child's 0.4 s, plus the start-up of two interpreters.
        assert 0.4 <= used < 5
        assert cpu_seconds(tree[1]) >= 0.4 > cpu_seconds(parent.pid) - cpu_seconds(tree[1])
        time.sleep(0.2)
        assert cpu_seconds(parent.pid) - used < 0.05  # both only sleep now
    finally:
        for pid in reversed(process_tree(parent.pid)):  # the child first
            os.kill(pid, signal.SIGTERM)
        parent.wait(timeout=10)


def test_cpu_seconds_of_a_finished_process_is_zero():
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert cpu_seconds(done.pid) == 0


# A parent that fills 64 MiB, then forks: the child shares every page of it, untouched.
_SHARING = """
import os, sys, time
block = bytearray(64 * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1
if os.fork() == 0:
    time.sleep(30)
    os._exit(0)
print("forked", flush=True)
time.sleep(30)
"""


def test_pss_counts_pages_a_forked_child_shares_once():
    parent = subprocess.Popen([sys.executable, "-c", _SHARING], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "forked"
        tree = process_tree(parent.pid)
        assert len(tree) == 2
        rss = current_rss_mib(parent.pid)
        pss = pss_mib(parent.pid)
        # RSS counts the 64 MiB in both processes; PSS once, split between them.
        assert rss >= 128
        assert 64 <= pss <= rss - 50
        assert pss_mib(tree[1]) < pss - 20  # the child's share alone: half the block
    finally:
        for pid in reversed(process_tree(parent.pid)):
            os.kill(pid, signal.SIGTERM)
        parent.wait(timeout=10)
