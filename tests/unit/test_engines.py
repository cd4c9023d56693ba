"""The engine seam: one selection from ``[backup] engine``, work/ below the engines.

Read from the source (ast): a module of provbackup/work importing
provbackup.engines, or a module outside provbackup/engines comparing a value
with an engine's name, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support import make_account, make_config, plan_of

from provbackup.config import BackupConfig, QuotaConfig
from provbackup.config.values import ENGINES as CONFIG_ENGINES
from provbackup.engines import ENGINES, engine_named, select_engine
from provbackup.plan import build_plan, describe

PACKAGE = Path(__file__).resolve().parents[2] / "provbackup"
NAMES = {"rsnapshot", "btrfs", "btrfs (experimental)"}


def modules(below: Path) -> list[Path]:
    return sorted(below.rglob("*.py"))


def imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", modules(PACKAGE / "work"), ids=lambda path: path.name)
def test_work_never_imports_the_engines(path: Path) -> None:
    assert not {name for name in imported(path) if name.startswith("provbackup.engines")}


def test_no_module_outside_engines_compares_engine_names() -> None:
    comparing = []
    for path in modules(PACKAGE):
        if path.parent.name == "engines":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                if any(isinstance(v, ast.Constant) and v.value in NAMES for v in values):
                    comparing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id.startswith("ENGINE_"):
                comparing.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.id}")
    assert comparing == []


def test_every_configurable_engine_is_selectable_and_named_as_configured() -> None:
    assert set(ENGINES) == set(CONFIG_ENGINES)
    for name in CONFIG_ENGINES:
        config = make_config(backup=BackupConfig(engine=name))
        assert select_engine(config) is engine_named(name)
        assert select_engine(config).name == name
    assert select_engine(make_config()).name == "rsnapshot"


def test_the_plan_carries_the_configured_engine_and_its_quota() -> None:
    quota = QuotaConfig(command=("setquota", "-g", "{gidnumber}", "{quota_kib}"))
    rsnapshot = make_config(quota=quota)
    btrfs = make_config(quota=quota, backup=BackupConfig(engine="btrfs"))
    account = make_account(quota_bytes=4096)

    by_rsnapshot = plan_of(account, "add", rsnapshot)
    by_btrfs = plan_of(account, "add", btrfs)

    assert by_rsnapshot.engine.name == "rsnapshot"
    assert by_rsnapshot.quota_argv == ("setquota", "-g", str(account.gid_number), "4")
    assert by_btrfs.engine.name == "btrfs"
    assert by_btrfs.quota_argv is None  # the qgroup limit, not the [quota] command
    assert by_btrfs.quota_note.endswith("limited to 4096 bytes")
    assert any("btrfs subvolume" in line for line in describe(by_btrfs))
    assert not any("btrfs subvolume" in line for line in describe(by_rsnapshot))


def test_a_plan_can_be_built_for_another_engine_than_the_configured_one() -> None:
    quota = QuotaConfig(command=("setquota", "{quota_bytes}"))
    btrfs = make_config(quota=quota, backup=BackupConfig(engine="btrfs"))
    account = plan_of(make_account(quota_bytes=4096), "delete", btrfs).account

    plan = build_plan(account, plan_of(account, "delete", btrfs).verb, btrfs,
                      engine=engine_named("rsnapshot"))  # fmt: skip

    assert plan.engine.name == "rsnapshot"
    assert plan.quota_argv == ("setquota", "0")  # a delete releases the quota


def test_layout_warning_only_while_both_layouts_or_the_other_engine_remain() -> None:
    from provbackup.engines.migration_check import layout_warnings

    assert layout_warnings({"rsnapshot": 3}, "rsnapshot") == []
    assert layout_warnings({"btrfs": 3}, "btrfs") == []
    (both,) = layout_warnings({"rsnapshot": 2, "btrfs": 1}, "rsnapshot")
    assert "both engines' layouts" in both and "2 rsnapshot" in both and "1 btrfs" in both
    (moved,) = layout_warnings({"btrfs": 4}, "rsnapshot")
    assert moved.startswith("4 accounts in the btrfs engine's layout")
