"""How many intra-op threads torch uses while pretraining: as many as the CPUs that
other processes leave free, re-checked as training goes.

torch's default (one OpenMP thread per core) is fastest on an idle machine and
collapses on a shared one: OpenMP threads wait for each other at every parallel
region, so when another process holds a core, every region waits for the thread
that lost its core, and training runs at a fraction of its one-thread speed (a
tenth and less beside other compute jobs on this project's 2-core machine).

:class:`AdaptiveThreads` measures, over windows of about a second, how much CPU
time the machine's other processes took (the busy time of the CPUs this process
may run on, from ``/proc/stat``, minus this process's own CPU time; time stolen
by the hypervisor counts as taken) and sets ``torch.set_num_threads`` to the CPUs
left free, rounded, between 1 and the count the process had when training began
(so ``OMP_NUM_THREADS`` or a ``torch.set_num_threads`` of the user's stays the
upper bound). On an idle machine nothing changes. The user's setting is restored
afterwards (``torch.set_num_threads`` is process-global).

A fixed count replaces the policy: ``SSL_TEXTVAE_NUM_THREADS=4`` in the environment
(or ``n_threads`` of :class:`~ssl_textvae.engine.training.TrainingConfig`). Where CPU
usage cannot be read (not Linux), the count stays as it was.

Every CPU loop of the package runs under :func:`cpu_threads`: pretraining,
fine-tuning and the batched passes of :mod:`ssl_textvae.nn.inference` (``transform``,
``predict``, validation). A pass inside a running loop steps that loop's policy.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Optional

import torch

from . import devices as runtime

ENV_VARIABLE = "SSL_TEXTVAE_NUM_THREADS"
# Seconds between checks; the first comes sooner, so a loaded machine costs little.
CHECK_SECONDS = 1.0
FIRST_CHECK_SECONDS = 0.3


def requested_threads(n_threads: Optional[int] = None) -> Optional[int]:
    """A fixed thread count from ``n_threads`` or, when that is None, from the
    environment variable ``SSL_TEXTVAE_NUM_THREADS`` ("auto" or unset: None, adaptive)."""
    if n_threads is not None:
        value, source = n_threads, "n_threads"
    else:
        value, source = os.environ.get(ENV_VARIABLE, "auto").strip().lower(), ENV_VARIABLE
        if value in ("", "auto"):
            return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1 or str(count) != str(value).strip():
        raise ValueError(f"{source} must be a positive int (or 'auto' for the environment "
                         f"variable), got {value!r}.")
    return count


def choose_threads(free_cpus: float, max_threads: int) -> int:
    """Threads for ``free_cpus`` CPUs left by other processes: rounded to the nearest
    whole CPU (a core more than half taken by another process is not free), at least
    1 and at most ``max_threads``."""
    return max(1, min(int(max_threads), int(math.floor(free_cpus + 0.5))))


class CpuUsage:
    """Busy seconds of the CPUs this process may run on, and this process's own CPU
    seconds, read together; None where ``/proc/stat`` cannot be read."""

    def __init__(self):
        try:
            self.cpus = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.cpus = list(range(os.cpu_count() or 1))
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = self.read() is not None

    def read(self):
        """(wall seconds, busy CPU seconds of our CPUs, this process's CPU seconds) or None."""
        wanted = {f"cpu{index}" for index in self.cpus}
        busy = 0
        try:
            with open("/proc/stat") as stat:
                for line in stat:
                    fields = line.split()
                    if not fields or not fields[0] in wanted:
                        continue
                    # user nice system idle iowait irq softirq steal (guest is inside user)
                    values = [int(v) for v in fields[1:9]]
                    busy += values[0] + values[1] + values[2] + values[5] + values[6] + values[7]
        except (OSError, ValueError, IndexError):
            return None
        return time.perf_counter(), busy / self.tick, time.process_time()

    @property
    def n_cpus(self) -> int:
        return len(self.cpus)


class AdaptiveThreads:
    """Context manager around a training loop; call :meth:`step` once per batch.

    Parameters
    ----------
    n_threads : int or None, default=None
        A fixed count (no adaptation); None reads ``SSL_TEXTVAE_NUM_THREADS``, and
        when that is unset or "auto" adapts to the free CPUs.
    interval : float or None, default=None
        Seconds between checks of the CPU usage (None: :data:`CHECK_SECONDS`, 1.0).
    first_interval : float or None, default=None
        Seconds before the first check (None: :data:`FIRST_CHECK_SECONDS`, 0.3).
    usage : CpuUsage or None, default=None
        Where CPU usage is read from (tests pass a fake).
    adapt : bool, default=True
        False keeps the thread count as it is (a fixed ``n_threads`` still applies):
        training on a GPU.

    Attributes
    ----------
    history : list of (float, int)
        (seconds since entry, threads) at entry and at each change.
    """

    def __init__(self, n_threads: Optional[int] = None, interval: Optional[float] = None,
                 first_interval: Optional[float] = None, usage: Optional[CpuUsage] = None,
                 adapt: bool = True):
        self.fixed = requested_threads(n_threads)
        self.adapt = adapt
        self.interval = CHECK_SECONDS if interval is None else interval
        self.first_interval = FIRST_CHECK_SECONDS if first_interval is None else first_interval
        self._usage = usage
        self.history = []

    def __enter__(self) -> "AdaptiveThreads":
        _running.append(self)
        self.saved = torch.get_num_threads()
        self.max_threads = self.saved
        self._start = time.perf_counter()
        if self.fixed is not None:
            self._set(self.fixed)
            self.adaptive = False
        else:
            wanted = self.adapt and self.max_threads >= 2
            if wanted and self._usage is None:
                self._usage = CpuUsage()
            self.adaptive = wanted and self._usage.available
            self._last = self._usage.read() if self.adaptive else None
            self._next_check = self._start + self.first_interval
        self.history.append((0.0, torch.get_num_threads()))
        return self

    def __exit__(self, *exc_info):
        self.adaptive = False   # a pass still holding this policy no longer changes threads
        if self in _running:
            _running.remove(self)
        if torch.get_num_threads() != self.saved:
            torch.set_num_threads(self.saved)

    def step(self):
        """Every ``interval`` seconds (checked at each call), re-check the free CPUs."""
        if not self.adaptive or time.perf_counter() < self._next_check:
            return
        now = self._usage.read()
        if now is None:
            self.adaptive = False
            return
        (wall0, busy0, own0), (wall1, busy1, own1) = self._last, now
        self._last, self._next_check = now, wall1 + self.interval
        if wall1 - wall0 <= 0:
            return
        # Others' share of our CPUs; this process's time may include CPUs outside them.
        others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (wall1 - wall0)
        target = choose_threads(self._usage.n_cpus - others, self.max_threads)
        if target != torch.get_num_threads():
            self._set(target)
            self.history.append((wall1 - self._start, target))

    @staticmethod
    def _set(threads: int):
        grew = threads > torch.get_num_threads()
        torch.set_num_threads(threads)
        if grew and runtime._flush_depth > 0:
            # new OpenMP workers start with the default floating-point state
            runtime.set_flush_denormal_all_threads(True)


_running = []   # the policies inside their ``with``, innermost last


@contextlib.contextmanager
def cpu_threads(device, n_threads: Optional[int] = None):
    """The thread policy of a loop on ``device``: the running one when the loop is
    inside another (a validation pass inside pretraining steps the training loop's
    policy), else a new :class:`AdaptiveThreads` (adapting on a CPU only). Call
    ``step()`` on what it yields once per batch."""
    if _running:
        yield _running[-1]
        return
    with AdaptiveThreads(n_threads, adapt=torch.device(device).type == "cpu") as policy:
        yield policy
