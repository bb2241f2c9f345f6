"""Other processes on a shared machine: how busy they keep it, and waiting for them to go idle.

A benchmark beside another job (a test run, a build) measures that job as much as the code; with
another job on the second core of a 2-core machine, timings swing by 2-10x.
"""

from __future__ import annotations

import os
import time


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait, guests excluded
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class OtherLoad:
    """Cores kept busy by *other* processes between ``start()`` and ``cores()``: machine busy
    time minus this process's own CPU time, over the wall time."""

    def start(self) -> OtherLoad:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_cpu_seconds(), _own_cpu()
        return self

    def cores(self) -> float | None:
        busy = _busy_cpu_seconds()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.t0
        return max(0.0, (busy - self.busy0 - (_own_cpu() - self.own0)) / max(wall, 1e-9))


def busy_cores(seconds: float = 0.5) -> float | None:
    """Cores kept busy by other processes while this one sleeps for ``seconds``."""
    load = OtherLoad().start()
    time.sleep(seconds)
    return load.cores()


class QuietGate:
    """Wait for other processes to go idle before a round, and re-run a round they disturbed.

    Spends at most ``budget_s`` seconds in all on waiting and on re-run rounds, then lets the
    run finish as it is; the header records the other load during every kept round. 0: off.
    """

    THRESHOLD = 0.1  # cores kept busy by other processes

    def __init__(self, budget_s: float) -> None:
        self.budget_s, self.spent_s, self.waited_s = budget_s, 0.0, 0.0
        self.rerun, self.loads = 0, []

    def wait(self) -> None:
        start = time.perf_counter()
        while self.spent_s + time.perf_counter() - start < self.budget_s:
            load = busy_cores(0.5)
            if load is None or load < self.THRESHOLD:
                break
        waited = time.perf_counter() - start
        self.spent_s += waited
        self.waited_s += waited

    def disturbed(self, load: OtherLoad) -> bool:
        """True when the round just run should be thrown away and run again."""
        cores, round_s = load.cores(), time.perf_counter() - load.t0
        if cores is not None and cores >= self.THRESHOLD and self.spent_s < self.budget_s:
            self.rerun += 1
            self.spent_s += round_s
            return True
        self.loads.append(cores)
        return False

    def summary(self) -> dict:
        return {
            "budget_s": self.budget_s,
            "waited_s": self.waited_s,
            "rounds_rerun": self.rerun,
            "round_loads": self.loads,
        }
