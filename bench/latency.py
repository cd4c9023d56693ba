"""Order-to-ready latency under the shipped timer, and the idle cost of that timer.

``latency``: a simulated ``provbackup.timer`` (its ``OnCalendar`` period and
``RandomizedDelaySec`` read from ``cron/provbackup.timer``, so the figures
follow the shipped settings) starts ``provbackup -q process`` as a real
process at every calendar tick plus a fresh random delay in
[0, RandomizedDelaySec], and never starts a run while the previous one is
still going (systemd merges the start into the running oneshot job); the
next run is at the first tick after the previous one ended. Meanwhile a
"web shop" adds new account entries as due ``add`` requests at random
moments (gaps uniform in [1, 5] s, so they fall at every phase of the timer)
and a watcher searches every 0.1 s for the ones that became ``added``. An
order's latency is from the end of its LDAP add to the first search that
sees it ``added`` (so it is overstated by up to 0.1 s plus a search).

``idle``: ``provbackup -q process`` with nothing due, run back to back;
each run's user + system CPU seconds (GNU time) times the runs per hour of
the timer (3600 / period) is the idle cost per hour; slapd's own CPU for
those runs (from /proc) is reported beside it.
"""

from __future__ import annotations

import math
import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.measure import Sample, run_measured
from sandbox import account_entry, jailkit_home_directory

TIMER = Path(__file__).resolve().parent.parent / "cron" / "provbackup.timer"
# The targets of issue 12.
P95_TARGET_SECONDS = 30.0
IDLE_CPU_TARGET_PER_HOUR = 60.0
FIRST_ORDER_UID = 7_000_000
WATCH_INTERVAL = 0.1


def timer_settings(path: Path = TIMER) -> tuple[float, float]:
    """The shipped timer's period and randomized delay in seconds.

    Understands the ``OnCalendar=*:*:0/N`` (every N seconds) and
    ``*:0/N`` (every N minutes) forms; raises ValueError for any other.
    """
    text = path.read_text(encoding="utf-8")
    calendar = re.search(r"^OnCalendar=(.+)$", text, re.MULTILINE)
    delay = re.search(r"^RandomizedDelaySec=(\d+)s?$", text, re.MULTILINE)
    if calendar is None:
        raise ValueError(f"{path}: no OnCalendar=")
    seconds = re.fullmatch(r"\*:\*:0/(\d+)", calendar[1].strip())
    minutes = re.fullmatch(r"\*:0/(\d+)", calendar[1].strip())
    if seconds:
        period = float(seconds[1])
    elif minutes:
        period = 60.0 * float(minutes[1])
    else:
        raise ValueError(f"{path}: OnCalendar={calendar[1]} is not a form the benchmark knows")
    return period, float(delay[1]) if delay else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: the smallest value with ``fraction`` of them at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class _Timer(threading.Thread):
    """Starts ``command`` at every tick of ``period`` plus a random delay, one run at a time."""

    def __init__(self, command: list[str], environment: dict[str, str], period: float,
                 delay: float, log: Path) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.command, self.environment, self.log = command, environment, log
        self.period, self.delay = period, delay
        self.stopping = threading.Event()
        self.exit_codes: list[int] = []
        self.starts: list[float] = []

    def run(self) -> None:
        random_delay = random.Random(12)
        with self.log.open("ab") as log:
            while not self.stopping.is_set():
                now = time.time()
                tick = math.floor(now / self.period) * self.period + self.period
                elapse = tick + random_delay.uniform(0, self.delay)
                if self.stopping.wait(max(0.0, elapse - time.time())):
                    return
                self.starts.append(time.time())
                completed = subprocess.run(
                    self.command, env=self.environment, stdout=log, stderr=log,
                    stdin=subprocess.DEVNULL, check=False,
                )  # fmt: skip
                self.exit_codes.append(completed.returncode)


def place_orders(
    phase: data.Phase, orders: int, written: dict[str, float], *, first_uid: int, seed: int
) -> None:
    """Add ``orders`` new accounts as due add requests, at random gaps; note when each was.

    Takes the phase, how many orders, the mapping uid → time written that
    it fills, the first order's uid and the seed of the gaps (uniform in
    [1, 5] s); raises RuntimeError when slapd refuses an add.
    """
    gaps = random.Random(seed)
    connection = phase.slapd.connection()
    try:
        for index in range(orders):
            time.sleep(gaps.uniform(1.0, 5.0))
            uid = str(first_uid + index)
            dn, attributes = account_entry(
                uid,
                base_dn=phase.slapd.accounts_dn,
                home_directory=jailkit_home_directory(phase.root, uid),
            )
            if not connection.add(dn, attributes=attributes):
                raise RuntimeError(f"adding order {dn} failed: {connection.result}")
            written[uid] = time.time()
    finally:
        connection.unbind()


def watch_ready(
    phase: data.Phase, orders: int, ready: dict[str, float], deadline: float, *, uid_pattern: str
) -> None:
    """Search every WATCH_INTERVAL for orders that became ``added``; note when first seen.

    Takes the phase, how many orders to wait for, the mapping uid → time
    first seen ``added`` that it fills, the time it gives up and the uid
    substring pattern of the orders (``70000*``); raises nothing of its own.
    """
    connection = phase.slapd.connection()
    try:
        while len(ready) < orders and time.time() < deadline:
            connection.search(
                phase.slapd.accounts_dn,
                f"(&(sstProvisioningMode=added)(uid={uid_pattern}))",
                attributes=["uid"],
            )
            now = time.time()
            for entry in connection.entries:
                ready.setdefault(str(entry.uid), now)
            time.sleep(WATCH_INTERVAL)
    finally:
        connection.unbind()


def serve_orders(
    phase: data.Phase, orders: int, *, first_uid: int, seed: int, uid_pattern: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Place ``orders`` orders while a watcher thread notes when each became ``added``.

    Takes the phase, how many orders and what :func:`place_orders` and
    :func:`watch_ready` need; returns (uid → written, uid → ready), the
    second missing the orders not ready within 20 s each plus 120 s;
    raises RuntimeError when an add is refused.
    """
    written: dict[str, float] = {}
    ready: dict[str, float] = {}
    deadline = time.time() + 20 * orders + 120
    watcher = threading.Thread(
        target=watch_ready, args=(phase, orders, ready, deadline),
        kwargs={"uid_pattern": uid_pattern}, daemon=True,
    )  # fmt: skip
    watcher.start()
    place_orders(phase, orders, written, first_uid=first_uid, seed=seed)
    watcher.join()
    return written, ready


def summary(samples: list[float]) -> dict[str, Any]:
    """Every sample and its p50, p95 and maximum (seconds, rounded to 0.01)."""
    return {
        "samples_seconds": samples,
        "p50_seconds": round(percentile(samples, 0.50), 2),
        "p95_seconds": round(percentile(samples, 0.95), 2),
        "max_seconds": max(samples),
    }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` so far (/proc/PID/stat); 0 for no process."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_latency(work: Path, options: Any, command: list[str], environment: dict[str, str],
                  progress: Any) -> dict[str, Any]:  # fmt: skip
    """Order-to-ready latency over ``options.latency_orders`` orders, and the idle cost per hour.

    Takes the working directory, the options, the provbackup command
    (``[python, bin/provbackup]``), the environment of measured commands and
    the progress printer. Returns every sample and the summary figures.
    Raises RuntimeError when a run fails or an order is not ready in time.
    """
    period, delay = timer_settings()
    orders = options.latency_orders
    progress(f"latency: loading {options.latency_accounts} accounts; timer every {period:g} s "
             f"+ up to {delay:g} s, {orders} orders")  # fmt: skip
    phase = data.prepare(work, "latency", accounts=options.latency_accounts, due=0,
                         indexes=options.indexes)  # fmt: skip
    process = [*command, "-q", "--config", str(phase.config), "process"]
    try:
        idle = _idle_cost(phase, process, environment, options.latency_idle_runs, period)
        timer = _Timer(process, environment, period, delay, phase.directory / "timer.log")
        timer.start()
        try:
            written, ready = serve_orders(
                phase, orders, first_uid=FIRST_ORDER_UID, seed=34, uid_pattern="70000*"
            )
        finally:
            timer.stopping.set()
            timer.join()
    finally:
        phase.slapd.stop()
    if set(ready) != set(written) or any(code != 0 for code in timer.exit_codes):
        raise RuntimeError(
            f"latency: {len(ready)}/{len(written)} orders ready, run exit codes "
            f"{sorted(set(timer.exit_codes))} (see {phase.directory / 'timer.log'})"
        )
    samples = [round(ready[uid] - written[uid], 2) for uid in sorted(written)]
    return {
        "timer": {"period_seconds": period, "randomized_delay_seconds": delay},
        "accounts": options.latency_accounts,
        "orders": orders,
        "runs_during_orders": len(timer.exit_codes),
        **summary(samples),
        "idle": idle,
    }


def _idle_cost(phase: data.Phase, process: list[str], environment: dict[str, str], runs: int,
               period: float) -> dict[str, Any]:  # fmt: skip
    """CPU seconds of idle runs (each a real process), and per hour at the timer's period."""
    run_measured(process, environment=environment)  # warm caches and bytecode
    slapd_before = cpu_seconds(phase.slapd.pid)
    samples: list[Sample] = [
        run_measured(process, environment=environment, stderr=phase.directory / "idle.err")
        for _ in range(runs)
    ]
    slapd_per_run = (cpu_seconds(phase.slapd.pid) - slapd_before) / runs
    cpu = sorted(sample.cpu_seconds for sample in samples)
    mean = sum(cpu) / len(cpu)
    runs_per_hour = 3600 / period
    return {
        "runs": runs,
        "samples_cpu_seconds": [round(sample.cpu_seconds, 3) for sample in samples],
        "samples_seconds": [round(sample.seconds, 3) for sample in samples],
        "mean_cpu_seconds": round(mean, 3),
        "runs_per_hour": runs_per_hour,
        "cpu_seconds_per_hour": round(mean * runs_per_hour, 1),
        "slapd_cpu_seconds_per_run": round(slapd_per_run, 4),
        "slapd_cpu_seconds_per_hour": round(slapd_per_run * runs_per_hour, 1),
    }


def latency_targets(result: dict[str, Any]) -> dict[str, tuple[Any, str, bool]]:
    """The issue-12 targets: name → (value, target text, met)."""
    p95 = result["p95_seconds"]
    idle = result["idle"]["cpu_seconds_per_hour"]
    return {
        "latency_p95_seconds": (p95, f"<= {P95_TARGET_SECONDS:g}", p95 <= P95_TARGET_SECONDS),
        "idle_cpu_seconds_per_hour": (idle, f"<= {IDLE_CPU_TARGET_PER_HOUR:g}",
                                      idle <= IDLE_CPU_TARGET_PER_HOUR),
    }  # fmt: skip


def latency_lines(result: dict[str, Any]) -> list[str]:
    """Table lines for the latency phase."""
    timer, idle = result["timer"], result["idle"]
    return [
        f"latency: order written -> added, timer every {timer['period_seconds']:g} s + up to "
        f"{timer['randomized_delay_seconds']:g} s, {result['orders']} orders: p50 "
        f"{result['p50_seconds']} s, p95 {result['p95_seconds']} s, max {result['max_seconds']} s",
        f"latency: samples (s) {result['samples_seconds']}",
        f"idle cost: {idle['mean_cpu_seconds']} CPU-s per run x {idle['runs_per_hour']:g} runs/h "
        f"= {idle['cpu_seconds_per_hour']} CPU-s/h (slapd: {idle['slapd_cpu_seconds_per_hour']} "
        f"CPU-s/h); per-run CPU samples {idle['samples_cpu_seconds']}",
    ]
