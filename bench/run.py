"""Run the benchmark phases, print the table and write the JSON.

Phases (``--only`` picks some):

- ``startup``: ``provbackup --help`` (and bare ``python -c pass`` for reference);
- ``burst``: ``provbackup -q process`` over N due ``add`` entries among M
  accounts, next to the floor (:mod:`bench.floor`) on the same data;
- ``idle``: ``provbackup -q process`` with nothing due at two directory sizes;
- ``scan``: ``provbackup scan --json`` over N due entries;
- ``latency``: order-to-ready latency under the shipped timer, and its idle
  cost per hour (:mod:`bench.latency`);
- ``snapshot``: ``provbackup snapshot daily --jobs N`` against a plain loop of
  ``rsnapshot -c CONF daily`` over the same accounts (:mod:`bench.snapshot`).

Every provbackup run is a separate process started the way the cron job
starts it (the console script with ``-q``), so interpreter start-up and
imports are part of every figure, as they are in production.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import data, latency, machine, watchlatency
from bench import snapshot as snapshot_phase
from bench.measure import Sample, check_gnu_time, median, run_measured

REPOSITORY = Path(__file__).resolve().parent.parent
PROVBACKUP = [sys.executable, str(REPOSITORY / "bin" / "provbackup")]
# What the status file's "ldap" says, and the floor prints: compared in the burst.
REQUEST_COUNTS = ("searches", "entries_returned", "modifies")
PHASES = ("startup", "burst", "idle", "scan", "latency", "snapshot")

# The targets of issue 5.
BURST_RATIO_TARGET = 1.5
IDLE_GROWTH_TARGET = 1.2
IDLE_RSS_TARGET_MB = 60.0
SCAN_RSS_TARGET_MB = 100.0
STARTUP_TARGET_SECONDS = 0.25
# The targets of issue 9.
SNAPSHOT_SPEEDUP_TARGET = 1.5
SNAPSHOT_RSS_GROWTH_TARGET = 1.2


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line (``python -m bench --help`` lists the options)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark provbackup against its targets."
    )
    add = parser.add_argument
    add(
        "--output",
        type=Path,
        default=Path("bench-results.json"),
        help="JSON results file [bench-results.json]",
    )
    add(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run [{','.join(PHASES)}]",
    )
    add(
        "--burst-runs",
        type=int,
        default=7,
        help="repetitions of the burst and of its floor, interleaved [7]",
    )
    add(
        "--idle-runs",
        type=int,
        default=10,
        help="repetitions of each idle run, the two sizes interleaved [10]",
    )
    add("--scan-runs", type=int, default=3, help="repetitions of scan --json [3]")
    add("--startup-runs", type=int, default=20, help="repetitions of --help [20]")
    add("--burst-accounts", type=int, default=10_000, help="accounts in the burst [10000]")
    add("--burst-due", type=int, default=1_000, help="due add entries among them [1000]")
    add("--idle-small", type=int, default=1_000, help="accounts of the small idle run [1000]")
    add("--idle-large", type=int, default=100_000, help="accounts of the large idle run [100000]")
    add("--scan-due", type=int, default=20_000, help="due entries scanned [20000]")
    add("--latency-orders", type=int, default=20, help="orders timed in the latency phase [20]")
    add("--latency-accounts", type=int, default=1_000, help="accounts around them [1000]")
    add("--latency-idle-runs", type=int, default=20, help="idle runs for the cost per hour [20]")
    add(
        "--watch",
        action="store_true",
        help="latency: also provbackup watch beside the timer, its idle cost and memory",
    )
    add(
        "--watch-idle-seconds",
        type=int,
        default=300,
        help="latency --watch: seconds the idle follower is measured [300]",
    )
    add(
        "--workdir",
        type=Path,
        default=None,
        help="where the slapds, backup roots and generated LDIF go (the backup roots' "
        "filesystem is the one measured) [a temporary directory, removed at the end]",
    )
    add(
        "--indexes",
        default=",".join(data.INDEXES),
        help=f"the slapd index lines, comma-separated [{','.join(data.INDEXES)}]",
    )
    add(
        "--safe-floor",
        action="store_true",
        help="also measure the floor with provbackup's filesystem safety (python -m "
        "bench.floor --safe) in the burst, to split the distance to the floor",
    )
    snapshot_phase.add_options(add)
    add("--keep", action="store_true", help="keep the working directory")
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in PHASES:  # python -m bench latency --watch
        arguments = ["--only", arguments[0], *arguments[1:]]
    options = parser.parse_args(arguments)
    options.phases = [name.strip() for name in options.only.split(",") if name.strip()]
    options.indexes = tuple(line.strip() for line in options.indexes.split(",") if line.strip())
    unknown = set(options.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(sorted(unknown))}; known: {', '.join(PHASES)}")
    return options  # fmt: skip


def environment() -> dict[str, str]:
    """The environment of measured commands: this checkout first on the path.

    PYTHONDONTWRITEBYTECODE is dropped: an installed package has its
    bytecode compiled (see :func:`compile_bytecode`), and a run that
    compiled every module from source would measure the compiler.
    """
    variables = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    for name in ("PROVBACKUP_CONFIG", "PYTHONDONTWRITEBYTECODE"):
        variables.pop(name, None)
    return variables


def compile_bytecode() -> None:
    """Compile provbackup and the floor to bytecode, as ``pip install`` would have."""
    run_measured(
        [sys.executable, "-m", "compileall", "-q", str(REPOSITORY / "provbackup"),
         str(REPOSITORY / "bench")],
        environment=environment(),
    )  # fmt: skip


def progress(message: str) -> None:
    """One progress line on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summarize(samples: list[Sample]) -> dict[str, Any]:
    """Median wall time, CPU time and peak RSS of ``samples``, with every sample kept."""
    return {
        "seconds": median([sample.seconds for sample in samples]),
        "cpu_seconds": median([sample.cpu_seconds for sample in samples]),
        "peak_rss_mb": median([sample.peak_rss_mb for sample in samples]),
        "samples_seconds": [round(sample.seconds, 4) for sample in samples],
        "samples_cpu_seconds": [round(sample.cpu_seconds, 2) for sample in samples],
        "samples_peak_rss_mb": [round(sample.peak_rss_mb, 1) for sample in samples],
    }


def load_average() -> float | None:
    """The 1-minute load average: other work on the machine skews every figure."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def fingerprint(top: Path) -> dict[str, tuple]:
    """Map every path below ``top`` to (type, mode, uid, gid, content hash); no symlink followed."""
    result: dict[str, tuple] = {}
    for directory, names, files in os.walk(top, followlinks=False):
        for name in names + files:
            path = Path(directory, name)
            info = path.lstat()
            digest = (
                hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else ""
            )
            result[str(path.relative_to(top))] = (stat.S_IFMT(info.st_mode),
                stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, digest)  # fmt: skip
    return result


def tree_differences(tree: dict[str, tuple], reference: dict[str, tuple]) -> list[str]:
    """One line per path whose (type, mode, uid, gid, hash) differs, or that one tree lacks."""
    lines = []
    for path in sorted(set(tree) | set(reference)):
        mine, theirs = tree.get(path), reference.get(path)
        if mine != theirs:
            lines.append(f"{path}: {mine or 'missing'} here, {theirs or 'missing'} in the floor's")
    return lines


def floor_requests(output: Path) -> dict[str, int]:
    """The LDAP request counts the floor printed (its last stdout line, JSON)."""
    counts = json.loads(output.read_text().splitlines()[-1])
    return {name: int(value) for name, value in counts.items()}


def count_entries(phase: data.Phase, search_filter: str) -> int:
    """How many entries under the accounts' DN match ``search_filter``."""
    connection = phase.slapd.connection()
    try:
        found = connection.extend.standard.paged_search(
            phase.slapd.accounts_dn, search_filter, attributes=["1.1"], paged_size=1000,
            generator=True,
        )  # fmt: skip
        return sum(1 for item in found if item.get("type") == "searchResEntry")
    finally:
        connection.unbind()


def check_burst_done(phase: data.Phase, due: int, who: str) -> None:
    """Raise RuntimeError unless every due entry is ``added`` and none is left in progress."""
    added = count_entries(
        phase, f"(&(sstProvisioningMode=added)(!(sstProvisioningState={data.DONE_STATE})))"
    )
    left = count_entries(phase, "(|(sstProvisioningMode=add)(sstProvisioningMode=adding))")
    if added != due or left:
        raise RuntimeError(f"{who}: {added} of {due} entries added, {left} left add/adding")


def bench_startup(options: argparse.Namespace) -> dict[str, Any]:
    """``provbackup --help`` wall time, and the bare interpreter's for reference."""
    progress(f"start-up: {options.startup_runs} runs of provbackup --help")
    variables = environment()
    run_measured([*PROVBACKUP, "--help"], environment=variables)  # warm the bytecode caches
    helps = [
        run_measured([*PROVBACKUP, "--help"], environment=variables)
        for _ in range(options.startup_runs)
    ]
    bare = [
        run_measured([sys.executable, "-c", "pass"], environment=variables)
        for _ in range(options.startup_runs)
    ]
    return {
        "runs": options.startup_runs,
        "help": summarize(helps),
        "python_bare": summarize(bare),
    }


def bench_burst(work: Path, options: argparse.Namespace) -> dict[str, Any]:
    """Burst: ``process`` over the due entries, next to the floor on the same data.

    Each repetition runs every command from the same freshly loaded
    directory and an empty backup root, in alternating order (floor first,
    then provbackup first), so neither always inherits the other's
    writeback. The ratio is the median of the repetitions' own ratios: a
    pair ran under the same conditions, which a machine shared with other
    work does not keep for long. The first repetition also checks every
    result: each due entry added in LDAP, and the backup trees identical
    (paths, owners, modes, contents). ``--safe-floor`` adds the floor with
    provbackup's filesystem safety as a third command.
    """
    accounts, due = options.burst_accounts, options.burst_due
    progress(f"burst: loading {due} due among {accounts} accounts")
    phase = data.prepare(work, "burst", accounts=accounts, due=due, indexes=options.indexes)
    variables = environment()
    floor = [sys.executable, "-m", "bench.floor"]
    commands = {
        "floor": [*floor, str(phase.config)],
        "provbackup": [*PROVBACKUP, "-q", "--config", str(phase.config), "process"],
    }
    if options.safe_floor:
        commands["safe_floor"] = [*floor, "--safe", str(phase.config)]
    samples: dict[str, list[Sample]] = {name: [] for name in commands}
    trees: dict[str, dict[str, tuple]] = {}
    requests: dict[str, dict[str, int]] = {}
    ldap: dict[str, int] = {}
    try:
        for repetition in range(options.burst_runs):
            order = list(commands) if repetition % 2 == 0 else list(reversed(commands))
            for name in order:
                progress(f"burst: repetition {repetition + 1}/{options.burst_runs}: {name}")
                data.reset(phase)
                samples[name].append(
                    run_measured(
                        commands[name],
                        stdout=phase.directory / f"{name}.out",
                        stderr=phase.directory / f"{name}.err",
                        environment=variables,
                    )
                )
                if name == "provbackup":
                    status = json.loads(phase.status_file.read_text())
                    if status["counts"]["done"] != due:
                        raise RuntimeError(f"provbackup: {status['counts']} of {due} due entries")
                    ldap = status["ldap"]
                if repetition == 0:
                    check_burst_done(phase, due, name)
                    trees[name] = fingerprint(phase.root)
                    requests[name] = (
                        {key: int(ldap[key]) for key in REQUEST_COUNTS}
                        if name == "provbackup"
                        else floor_requests(phase.directory / f"{name}.out")
                    )
    finally:
        phase.slapd.stop()
        data.discard_trees(phase)
    identical = all(tree == trees["floor"] for tree in trees.values())
    if not identical:
        progress("burst: WARNING: the backup trees differ between the commands")
        for name, tree in trees.items():
            differences = tree_differences(tree, trees["floor"])
            for line in differences[:20]:
                progress(f"burst: {name}: {line}")
            if len(differences) > 20:
                progress(f"burst: {name}: ... {len(differences) - 20} more paths differ")
    same_requests = all(counts == requests["floor"] for counts in requests.values())
    if not same_requests:
        progress(f"burst: WARNING: the LDAP requests differ between the commands: {requests}")

    def paired(mine: str, base: str) -> float:
        pairs = zip(samples[mine], samples[base], strict=True)
        return median([one.seconds / other.seconds for one, other in pairs])

    figures = {name: summarize(runs) for name, runs in samples.items()}
    for name in figures:
        figures[name]["entries_per_second"] = round(due / figures[name]["seconds"], 1)
    figures["provbackup"]["ldap"] = ldap
    product, floor_figures = figures["provbackup"], figures["floor"]
    result = {
        "accounts": accounts,
        "due": due,
        "runs": options.burst_runs,
        **figures,
        "ratio": paired("provbackup", "floor"),
        "ratio_of_medians": round(product["seconds"] / floor_figures["seconds"], 3),
        "cpu_ratio": round(product["cpu_seconds"] / max(floor_figures["cpu_seconds"], 0.01), 3),
        "same_tree_as_floor": identical,
        "ldap_requests": requests,
        "same_requests_as_floor": same_requests,
    }
    if options.safe_floor:
        result["safe_floor_ratio"] = paired("safe_floor", "floor")
        result["ratio_to_safe_floor"] = paired("provbackup", "safe_floor")
    return result


def bench_idle(work: Path, options: argparse.Namespace) -> dict[str, Any]:
    """Idle: ``process`` with nothing due, at two directory sizes, runs interleaved.

    Both slapds run side by side and the runs alternate between them, so a
    burst of other work on the machine falls on both sizes alike.
    """
    sizes = {"small": options.idle_small, "large": options.idle_large}
    phases: dict[str, data.Phase] = {}
    variables = environment()
    samples: dict[str, list[Sample]] = {size: [] for size in sizes}
    returned: dict[str, list[int]] = {size: [] for size in sizes}
    try:
        for size, accounts in sizes.items():
            progress(f"idle: loading {accounts} accounts, none due")
            phases[size] = data.prepare(
                work, f"idle-{accounts}", accounts=accounts, due=0, indexes=options.indexes
            )
        commands = {
            size: [*PROVBACKUP, "-q", "--config", str(phase.config), "process"]
            for size, phase in phases.items()
        }
        for command in commands.values():
            run_measured(command, environment=variables)  # warm slapd's and the kernel's caches
        progress(f"idle: {options.idle_runs} runs at each size, interleaved")
        for _ in range(options.idle_runs):
            for size, phase in phases.items():
                samples[size].append(
                    run_measured(
                        commands[size],
                        stderr=phase.directory / "process.err",
                        environment=variables,
                    )
                )
                status = json.loads(phase.status_file.read_text())
                returned[size].append(int(status["ldap"]["entries_returned"]))
    finally:
        for phase in phases.values():
            phase.slapd.stop()
    return {
        size: {
            "accounts": accounts,
            "runs": options.idle_runs,
            **summarize(samples[size]),
            "entries_returned": max(returned[size]),
        }
        for size, accounts in sizes.items()
    }


def bench_scan(work: Path, options: argparse.Namespace) -> dict[str, Any]:
    """Scan: ``scan --json`` over that many due entries; the output is checked once."""
    due = options.scan_due
    progress(f"scan: loading {due} due entries")
    phase = data.prepare(work, "scan", accounts=due, due=due, indexes=options.indexes)
    variables = environment()
    output = phase.directory / "scan.json"
    samples: list[Sample] = []
    try:
        for repetition in range(options.scan_runs):
            progress(f"scan: run {repetition + 1}/{options.scan_runs}")
            samples.append(
                run_measured(
                    [*PROVBACKUP, "-q", "--config", str(phase.config), "scan", "--json"],
                    stdout=output,
                    stderr=phase.directory / "scan.err",
                    environment=variables,
                )
            )
            if repetition == 0:
                with output.open(encoding="utf-8") as handle:
                    listed = len(json.load(handle))
                if listed != due:
                    raise RuntimeError(f"scan --json listed {listed} entries, expected {due}")
    finally:
        phase.slapd.stop()
    return {"due": due, "runs": options.scan_runs, **summarize(samples)}


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of issue 5 with the figure measured and whether it is met."""
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, value: Any, target: str, met: bool) -> None:
        checks[name] = {"value": value, "target": target, "met": met}

    if "burst" in results:
        ratio = results["burst"]["ratio"]
        check("burst_ratio", ratio, f"<= {BURST_RATIO_TARGET}", ratio <= BURST_RATIO_TARGET)
    idle = results.get("idle", {})
    if "small" in idle and "large" in idle:
        growth = round(idle["large"]["seconds"] / idle["small"]["seconds"], 3)
        check("idle_growth", growth, f"<= {IDLE_GROWTH_TARGET}", growth <= IDLE_GROWTH_TARGET)
    for size in ("small", "large"):
        if size in idle:
            rss = idle[size]["peak_rss_mb"]
            check(f"idle_{size}_rss_mb", rss, f"< {IDLE_RSS_TARGET_MB}", rss < IDLE_RSS_TARGET_MB)
            returned = idle[size]["entries_returned"]
            check(f"idle_{size}_entries_returned", returned, "== 0", returned == 0)
    if "scan" in results:
        rss = results["scan"]["peak_rss_mb"]
        check("scan_rss_mb", rss, f"< {SCAN_RSS_TARGET_MB}", rss < SCAN_RSS_TARGET_MB)
    if "latency" in results and "watch" in results["latency"]:
        for name, (value, target, met) in watchlatency.watch_targets(results["latency"]).items():
            check(name, value, target, met)
    elif "latency" in results:
        for name, (value, target, met) in latency.latency_targets(results["latency"]).items():
            check(name, value, target, met)
    if "snapshot" in results:
        speedup = results["snapshot"]["speedup"]
        check("snapshot_speedup", speedup, f">= {SNAPSHOT_SPEEDUP_TARGET}",
              speedup >= SNAPSHOT_SPEEDUP_TARGET)  # fmt: skip
        small = results["snapshot"]["provbackup"]["peak_rss_mb"]
        growth = round(results["snapshot"]["large"]["peak_rss_mb"] / small, 3)
        check("snapshot_rss_growth", growth, f"<= {SNAPSHOT_RSS_GROWTH_TARGET}",
              growth <= SNAPSHOT_RSS_GROWTH_TARGET)  # fmt: skip
    if "startup" in results:
        seconds = results["startup"]["help"]["seconds"]
        check("startup_seconds", seconds, f"< {STARTUP_TARGET_SECONDS}",
              seconds < STARTUP_TARGET_SECONDS)  # fmt: skip
    return checks


def table(document: dict[str, Any]) -> str:
    """The figures as a plain-text table, machine first."""
    described = document["machine"]
    results, checks = document["results"], document["targets"]
    lines = [
        f"provbackup benchmark, {document['finished']}, took {document['elapsed_seconds']} s",
        f"machine: {described['cpu']}, {described['cores']} cores, "
        f"{described['memory_gib']} GiB RAM, {described['kernel']}, Python {described['python']}, "
        f"ldap3 {described['ldap3']}, slapd {described['slapd']}, "
        f"rsnapshot {described['rsnapshot']}",
        f"slapd indexes: {', '.join(document['settings']['indexes'])}",
        f"load average (1 min) at start {document['load_average']['start']}, "
        f"at end {document['load_average']['end']}",
        "",
        f"{'measurement (median)':<48} {'wall s':>8} {'CPU s':>7} {'peak MB':>8}  other",
    ]

    def row(name: str, figures: dict[str, Any], other: str = "") -> None:
        lines.append(
            f"{name:<48} {figures['seconds']:>8.3f} {figures['cpu_seconds']:>7.2f} "
            f"{figures['peak_rss_mb']:>8.1f}  {other}"
        )

    if "burst" in results:
        burst = results["burst"]
        label = f"{burst['due']} due among {burst['accounts']}"
        row(f"burst: provbackup process, {label}", burst["provbackup"],
            f"{burst['provbackup']['entries_per_second']} entries/s")  # fmt: skip
        row(f"burst: floor (ldap3 + os), {label}", burst["floor"],
            f"{burst['floor']['entries_per_second']} entries/s")  # fmt: skip
        if "safe_floor" in burst:
            row(f"burst: floor + fs safety, {label}", burst["safe_floor"],
                f"{burst['safe_floor']['entries_per_second']} entries/s; paired: "
                f"{burst['safe_floor_ratio']} x floor, provbackup "
                f"{burst['ratio_to_safe_floor']} x this")  # fmt: skip
        lines.append(f"{'burst: ratio provbackup / floor, paired runs':<48} "
                     f"{burst['ratio']:>8.3f} {burst['cpu_ratio']:>7.2f}{'':>9}  "
                     f"of medians {burst['ratio_of_medians']}, "
                     f"same tree: {burst['same_tree_as_floor']}, "
                     f"same LDAP requests: {burst.get('same_requests_as_floor')}")  # fmt: skip
    for size in ("small", "large"):
        if size in results.get("idle", {}):
            idle = results["idle"][size]
            row(f"idle: provbackup process, {idle['accounts']} accounts", idle,
                f"entries returned: {idle['entries_returned']}")  # fmt: skip
    if "scan" in results:
        row(f"scan --json, {results['scan']['due']} due", results["scan"])
    if "snapshot" in results:
        snap = results["snapshot"]
        row(f"snapshot: provbackup --jobs {snap['jobs']}, {snap['accounts']} accounts",
            snap["provbackup"], f"{snap['speedup']} x the loop (paired)")  # fmt: skip
        row(f"snapshot: rsnapshot loop, {snap['accounts']} accounts", snap["loop"])
        row(f"snapshot: provbackup, {snap['large']['accounts']} accounts", snap["large"])
    if "startup" in results:
        row("start-up: provbackup --help", results["startup"]["help"])
        row("start-up: python -c pass (reference)", results["startup"]["python_bare"])
    if "latency" in results and "watch" in results["latency"]:
        lines += watchlatency.watch_lines(results["latency"])
    elif "latency" in results:
        lines += latency.latency_lines(results["latency"])
    lines += ["", f"{'target':<34} {'value':>10} {'target':>10}  met"]
    for name, item in checks.items():
        met = "yes" if item["met"] else "NO"
        lines.append(f"{name:<34} {item['value']!s:>10} {item['target']:>10}  {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the phases asked for; returns 0 when every target checked is met, else 1."""
    options = parse_options(argv)
    if os.geteuid() != 0:
        print("python -m bench: run as root (accounts are chowned to their users)", file=sys.stderr)
        return 2
    check_gnu_time()
    started = time.monotonic()
    load_at_start = load_average()
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="provbackup-bench-", dir=options.workdir))
    compile_bytecode()
    results: dict[str, Any] = {}
    runners: dict[str, Callable[[], Any]] = {
        "startup": lambda: bench_startup(options),
        "burst": lambda: bench_burst(work, options),
        "idle": lambda: bench_idle(work, options),
        "scan": lambda: bench_scan(work, options),
        "latency": lambda: (
            watchlatency.bench_watch_latency(work, options, PROVBACKUP, environment(), progress)
            if options.watch
            else latency.bench_latency(work, options, PROVBACKUP, environment(), progress)
        ),
        "snapshot": lambda: snapshot_phase.bench_snapshot(work, options, environment(), progress),
    }
    try:
        for name in PHASES:
            if name in options.phases:
                results[name] = runners[name]()
    finally:
        if options.keep:
            progress(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    document = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "machine": machine.describe(),
        "load_average": {"start": load_at_start, "end": load_average()},
        "settings": {
            "indexes": list(options.indexes),
            "repetitions": {
                "burst": options.burst_runs,
                "idle": options.idle_runs,
                "scan": options.scan_runs,
                "startup": options.startup_runs,
                "snapshot": options.snapshot_runs,
            },
            "command": "provbackup -q --config CONFIG process (as cron runs it)",
            "ldap": "plain LDAP on 127.0.0.1, slapd mdb with dbnosync",
        },
        "results": results,
    }
    document["targets"] = targets(results)
    print(table(document))
    options.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    progress(f"wrote {options.output}")
    return 0 if all(item["met"] for item in document["targets"].values()) else 1
