"""How much of the CPU other processes took while a benchmark ran.

A benchmark that trains for a wall-clock budget loses whatever another process takes from it (a profiler, a test
run, a second benchmark): fewer epochs, a worse number, with nothing in the record to say why. The runner reads
the machine's CPU counters (Linux ``/proc/stat``) around each benchmark, subtracts the time its own process used,
and keeps the rest in the results file; a busy machine is named before a benchmark starts and in its notes.
Elsewhere than Linux the counters are missing and nothing is measured (``None``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# Other processes using this share of the machine (all cores) get named: 5 % of two cores is a tenth of one.
BUSY_SHARE_PCT = 5.0
IDLE_SAMPLE_S = 0.25  # how long the runner listens before each benchmark starts


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds since boot, summed over every core of the machine."""

    busy_s: float   # every process: user, nice, system, irq and softirq time
    steal_s: float  # time the hypervisor gave this virtual machine's cores to other machines
    own_s: float    # this process and the children it has waited for


def read_cpu_times(stat_path: Path = PROC_STAT) -> CpuTimes | None:
    """The machine's CPU counters now, or None where ``stat_path`` is missing or not in /proc/stat's format."""
    try:
        first_line = stat_path.read_text(encoding="ascii").split("\n", 1)[0]
        name, *fields = first_line.split()
        ticks = [int(value) for value in fields]
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if name != "cpu" or len(ticks) < 8:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    import resource  # Unix only, as /proc/stat is

    per_second = os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_s = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return CpuTimes(busy_s=(user + nice + system + irq + softirq) / per_second, steal_s=steal / per_second,
                    own_s=own_s)


def contention(before: CpuTimes | None, after: CpuTimes | None, wall_s: float, cores: int) -> dict | None:
    """Shares of the machine (percent of ``cores`` x ``wall_s``) that other processes and the hypervisor took
    between two readings; None when either reading is missing or no time passed."""
    if before is None or after is None or wall_s <= 0 or cores < 1:
        return None
    capacity = wall_s * cores
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    # The counters tick at 100 Hz and rusage is finer: a slightly negative difference is rounding.
    return {"other_processes_cpu_pct": round(100.0 * max(0.0, others) / capacity, 1),
            "steal_pct": round(100.0 * max(0.0, after.steal_s - before.steal_s) / capacity, 1)}


def busy_before_start(sample_s: float = IDLE_SAMPLE_S, stat_path: Path = PROC_STAT) -> dict | None:
    """:func:`contention` over ``sample_s`` seconds in which this process sleeps: what other processes take now."""
    before = read_cpu_times(stat_path)
    started = time.perf_counter()
    time.sleep(sample_s)
    return contention(before, read_cpu_times(stat_path), time.perf_counter() - started, os.cpu_count() or 1)


def is_busy(shares: dict | None) -> bool:
    return shares is not None and (shares["other_processes_cpu_pct"] >= BUSY_SHARE_PCT
                                   or shares["steal_pct"] >= BUSY_SHARE_PCT)


def describe(shares: dict) -> str:
    """``other processes took 37.5 % of the machine's CPU and the hypervisor 0.0 % (steal)``."""
    return (f"other processes took {shares['other_processes_cpu_pct']:.1f} % of the machine's CPU and the "
            f"hypervisor {shares['steal_pct']:.1f} % (steal)")
