"""``latency --watch``: order-to-ready under ``provbackup watch``, beside the 15 s timer.

Two directories, each with its own slapd (with syncprov) and backup root,
are ordered into at the same time by two "web shops" (the same random gaps
as :mod:`bench.latency`, uniform in [1, 5] s): one is served by the
simulated shipped timer (:class:`bench.latency._Timer`), the other by a
real ``provbackup -q watch`` process (and no timer). An order's latency is
from the end of its LDAP add to the first search (every 0.1 s) that sees
it ``added``. Then, with nothing to do, the follower's and its slapd's CPU
seconds over ``--watch-idle-seconds`` (from /proc) give the idle cost per
hour; 10,000 modifies of scheduled entries (events the follower must read
and classify, no batch) give its RSS before and after.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import ldap3

from bench import data
from bench.latency import _Timer, cpu_seconds, serve_orders, summary, timer_settings
from sandbox import account_entry, jailkit_home_directory

FIRST_UID = 7_100_000
SCHEDULED_UID = 7_900_000
SCHEDULED_ENTRIES = 100
EVENTS = 10_000


def _rss_mb(pid: int) -> float:
    """Resident set of ``pid`` in MB (10**6 bytes), from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) * 1024 / 1e6, 1)
    return 0.0


def _serve_orders(phase: data.Phase, orders: int, seed: int) -> list[float]:
    """Each order's seconds from written to ``added``; RuntimeError when one is not ready."""
    written, ready = serve_orders(phase, orders, first_uid=FIRST_UID, seed=seed, uid_pattern="71*")
    if set(ready) != set(written):
        raise RuntimeError(f"{phase.name}: {len(ready)}/{len(written)} orders ready")
    return [round(ready[uid] - written[uid], 2) for uid in sorted(written)]


def _events(phase: data.Phase, follower: subprocess.Popen[bytes]) -> dict[str, Any]:
    """RSS of the follower before and after EVENTS modifies of scheduled entries."""
    connection = phase.slapd.connection()
    try:
        dns = []
        for index in range(SCHEDULED_ENTRIES):
            uid = str(SCHEDULED_UID + index)
            dn, attributes = account_entry(
                uid,
                base_dn=phase.slapd.accounts_dn,
                date="29991231",
                home_directory=jailkit_home_directory(phase.root, uid),
            )
            connection.add(dn, attributes=attributes)
            dns.append(dn)
        time.sleep(2)
        before = _rss_mb(follower.pid)
        cpu_before = cpu_seconds(follower.pid)
        for number in range(EVENTS):
            connection.modify(
                dns[number % len(dns)],
                {"sstQuota": [(ldap3.MODIFY_REPLACE, [str(2**30 + number)])]},
            )
        settled = cpu_seconds(follower.pid)
        while True:  # the follower has read everything when its CPU stops growing
            time.sleep(2)
            now = cpu_seconds(follower.pid)
            if now - settled < 0.02:
                break
            settled = now
        return {
            "events": EVENTS,
            "rss_before_mb": before,
            "rss_after_mb": _rss_mb(follower.pid),
            "cpu_seconds_for_events": round(settled - cpu_before, 2),
        }
    finally:
        connection.unbind()


def bench_watch_latency(
    work: Path, options: Any, command: list[str], environment: dict[str, str], progress: Any
) -> dict[str, Any]:
    """The timer and the follower side by side; the follower's idle cost and memory.

    Returns every sample and the summary figures; raises RuntimeError when
    an order is not ready in time or the follower exits.
    """
    period, delay = timer_settings()
    orders = options.latency_orders
    progress(
        f"latency --watch: {orders} orders to the timer (every {period:g} s + up to "
        f"{delay:g} s) and {orders} to the follower, at the same time"
    )
    timed = data.prepare(
        work, "latency-timer", accounts=options.latency_accounts, due=0, indexes=options.indexes
    )
    followed = data.prepare(
        work,
        "latency-watch",
        accounts=options.latency_accounts,
        due=0,
        indexes=options.indexes,
        syncprov=True,
    )
    timer = _Timer(
        [*command, "-q", "--config", str(timed.config), "process"],
        environment,
        period,
        delay,
        timed.directory / "timer.log",
    )
    log = (followed.directory / "watch.log").open("ab")
    follower = subprocess.Popen(
        [*command, "-q", "--config", str(followed.config), "watch"],
        env=environment,
        stdout=log,
        stderr=log,
    )
    results: dict[str, Any] = {}
    try:
        timer.start()
        time.sleep(5)  # the follower's first refresh
        rss_start = _rss_mb(follower.pid)
        side = threading.Thread(
            target=lambda: results.update(timer=_serve_orders(timed, orders, 34)), daemon=True
        )
        side.start()
        results["watch"] = _serve_orders(followed, orders, 56)
        side.join()
        timer.stopping.set()
        timer.join()
        timed.slapd.stop()
        if follower.poll() is not None:
            raise RuntimeError(f"the follower exited {follower.returncode}")
        rss_orders = _rss_mb(follower.pid)
        seconds = options.watch_idle_seconds
        progress(f"latency --watch: idle follower for {seconds} s")
        cpu, slapd_cpu = cpu_seconds(follower.pid), cpu_seconds(followed.slapd.pid)
        time.sleep(seconds)
        cpu = cpu_seconds(follower.pid) - cpu
        slapd_cpu = cpu_seconds(followed.slapd.pid) - slapd_cpu
        progress(f"latency --watch: {EVENTS} events")
        events = _events(followed, follower)
    finally:
        timer.stopping.set()
        follower.terminate()
        follower.wait(timeout=120)
        log.close()
        timed.slapd.stop()
        followed.slapd.stop()
    return {
        "orders": orders,
        "accounts": options.latency_accounts,
        "timer": {
            "period_seconds": period,
            "randomized_delay_seconds": delay,
            "runs_during_orders": len(timer.exit_codes),
            "exit_codes": sorted(set(timer.exit_codes)),
            **summary(results["timer"]),
        },
        "watch": summary(results["watch"]),
        "watch_idle": {
            "seconds": seconds,
            "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_hour": round(cpu * 3600 / seconds, 2),
            "slapd_cpu_seconds": round(slapd_cpu, 3),
            "slapd_cpu_seconds_per_hour": round(slapd_cpu * 3600 / seconds, 2),
        },
        "watch_memory": {"rss_start_mb": rss_start, "rss_after_orders_mb": rss_orders, **events},
        "follower_exit_code": follower.returncode,
    }


def watch_lines(result: dict[str, Any]) -> list[str]:
    """Table lines for ``latency --watch``."""
    timer, watch = result["timer"], result["watch"]
    idle, memory = result["watch_idle"], result["watch_memory"]
    return [
        f"latency (same run, {result['orders']} orders each): timer p50 {timer['p50_seconds']} s "
        f"p95 {timer['p95_seconds']} s max {timer['max_seconds']} s; watch p50 "
        f"{watch['p50_seconds']} s p95 {watch['p95_seconds']} s max {watch['max_seconds']} s",
        f"latency: timer samples (s) {timer['samples_seconds']}",
        f"latency: watch samples (s) {watch['samples_seconds']}",
        f"watch idle: {idle['cpu_seconds']} CPU-s in {idle['seconds']} s = "
        f"{idle['cpu_seconds_per_hour']} CPU-s/h; "
        f"slapd {idle['slapd_cpu_seconds_per_hour']} CPU-s/h",
        f"watch RSS: start {memory['rss_start_mb']} MB, after orders "
        f"{memory['rss_after_orders_mb']} MB, before/after {memory['events']} events "
        f"{memory['rss_before_mb']}/{memory['rss_after_mb']} MB",
    ]


# The targets of issue 18.
WATCH_P95_TARGET_SECONDS = 2.0
WATCH_IDLE_TARGET_PER_HOUR = 5.0
RSS_GROWTH_TARGET = 1.2


def watch_targets(result: dict[str, Any]) -> dict[str, tuple[Any, str, bool]]:
    """The issue-18 targets: name → (value, target text, met)."""
    p95 = result["watch"]["p95_seconds"]
    idle = result["watch_idle"]["cpu_seconds_per_hour"]
    memory = result["watch_memory"]
    growth = round(memory["rss_after_mb"] / memory["rss_before_mb"], 3)
    return {
        "watch_p95_seconds": (
            p95,
            f"<= {WATCH_P95_TARGET_SECONDS:g}",
            p95 <= WATCH_P95_TARGET_SECONDS,
        ),
        "watch_idle_cpu_seconds_per_hour": (
            idle,
            f"<= {WATCH_IDLE_TARGET_PER_HOUR:g}",
            idle <= WATCH_IDLE_TARGET_PER_HOUR,
        ),
        "watch_rss_growth_10k_events": (
            growth,
            f"<= {RSS_GROWTH_TARGET}",
            growth <= RSS_GROWTH_TARGET,
        ),
    }
