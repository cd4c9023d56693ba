"""The manual pages (man/): they render without warnings and never drift from the code.

Every option of every command (walked from the click group), every
configuration key declared in ``provbackup.config.sections`` with its default
(man page and sample config), every exit code and every hook variable must be documented,
each in its own section of the page.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from provbackup import config as configuration
from provbackup import errors

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man"
PAGES = [MAN / "provbackup.1", MAN / "provbackup.conf.5"]
COMMAND_PAGE = PAGES[0]
CONFIG_PAGE = PAGES[1]

# Font macros whose arguments alternate fonts without spaces (.BR) or join with spaces (.B).
_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}
_JOINING = {"B", "I", "SM", "SB"}
_ESCAPES = [
    (re.compile(r"\\f(\[[^]]*\]|.)"), ""),  # font changes
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\%"), ""),
    (re.compile(r"\\&"), ""),
    (re.compile(r"\\ "), " "),
    (re.compile(r"\\\(em"), "—"),
    (re.compile(r"\\\(aq"), "'"),
    (re.compile(r"\\e"), "\\\\"),
]


@dataclasses.dataclass
class Item:
    """A tagged paragraph (``.TP``): the tag line and the body, as plain text."""

    tag: str
    body: str


@dataclasses.dataclass
class Section:
    """A ``.SH``/``.SS`` section: its plain text and its tagged items."""

    text: str = ""
    items: list[Item] = dataclasses.field(default_factory=list)


def plain(line: str) -> str:
    """One roff source line as the text it shows (macros and escapes removed)."""
    for pattern, replacement in _ESCAPES:
        line = pattern.sub(replacement, line)
    if not line.startswith("."):
        return line
    macro, _, rest = line[1:].partition(" ")
    if macro in _ALTERNATING or macro in _JOINING:
        arguments = shlex.split(rest.replace("\\", "\\\\"))
        return ("" if macro in _ALTERNATING else " ").join(arguments)
    return ""


def sections(page: Path, level: str) -> dict[str, Section]:
    """The page's sections at ``level`` ("SH" or "SS"), by title, with their items."""
    found: dict[str, Section] = {}
    current: Section | None = None
    item: Item | None = None
    expect_tag = False
    for line in page.read_text().splitlines():
        if line.startswith('.\\"'):
            continue
        macro = line[1:].split(" ", 1)[0] if line.startswith(".") else ""
        if macro == level:
            title = plain("." + "B " + line[len(level) + 2 :]).strip()
            current = found.setdefault(title, Section())
            item, expect_tag = None, False
            continue
        if current is None:
            continue
        if macro in ("SH", "SS", "PP", "P", "LP"):
            item, expect_tag = None, False
            continue
        if macro == "TP":
            expect_tag = True
            continue
        text = plain(line)
        current.text += text + "\n"
        if expect_tag:
            item = Item(tag=text, body="")
            current.items.append(item)
            expect_tag = False
        elif item is not None:
            item.body += text + " "
    return found


def tags(section: Section) -> set[str]:
    """Every word of every item tag in ``section`` (``--dn DN`` gives --dn and DN)."""
    return {word.strip(",|()[]") for item in section.items for word in item.tag.split()}


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_page_renders_without_warnings(page):
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0
    assert result.stderr == ""


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_man_shows_the_page_without_warnings(page):
    result = subprocess.run(
        ["man", "--warnings", "-l", str(page)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "LANG": "C.UTF-8", "MANPAGER": "cat"},
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "provbackup" in result.stdout


def the_cli() -> click.Group:
    from provbackup.__main__ import cli

    return cli


def test_every_command_and_its_options_are_in_provbackup_1():
    cli = the_cli()
    commands = sections(COMMAND_PAGE, "SS")
    missing = []
    with click.Context(cli) as context:
        documented = tags(sections(COMMAND_PAGE, "SH")["GLOBAL OPTIONS"])
        for parameter in cli.get_params(context):  # includes -h/--help and --version
            missing += [
                f"provbackup {name}"
                for name in [*parameter.opts, *parameter.secondary_opts]
                if name not in documented
            ]
    for name, command in cli.commands.items():
        if name not in commands:
            missing.append(f"command {name} (a .SS {name} under COMMANDS)")
            continue
        section = commands[name]
        for parameter in command.params:
            if isinstance(parameter, click.Argument):
                if parameter.human_readable_name not in section.text:
                    missing.append(f"{name} {parameter.human_readable_name}")
                continue
            missing += [
                f"{name} {option}"
                for option in [*parameter.opts, *parameter.secondary_opts]
                if option not in tags(section)
            ]
    assert missing == [], "undocumented in man/provbackup.1"


def test_command_synopsis_names_every_command_and_option():
    cli = the_cli()
    synopsis = sections(COMMAND_PAGE, "SH")["SYNOPSIS"].text
    for name, command in cli.commands.items():
        assert f"provbackup {name}" in synopsis
        for parameter in command.params:
            for option in parameter.opts:
                if option.startswith("-"):
                    assert option in synopsis, f"{name} {option}"


def test_every_exit_code_is_in_provbackup_1():
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    exit_status = sections(COMMAND_PAGE, "SH")["EXIT STATUS"]

    assert codes == {0, 1, 2, 69, 70, 75, 78, 79}
    assert {str(code) for code in codes} <= tags(exit_status)
    # check's own convention is documented with the command.
    check = sections(COMMAND_PAGE, "SS")["check"]
    assert {"0", "1", "2", "3", "OK", "WARNING", "CRITICAL", "UNKNOWN"} <= tags(check)


def test_environment_and_files_are_in_provbackup_1():
    headings = sections(COMMAND_PAGE, "SH")

    assert configuration.CONFIG_ENVIRONMENT_VARIABLE in tags(headings["ENVIRONMENT"])
    files = tags(headings["FILES"])
    assert str(configuration.DEFAULT_CONFIG_PATH) in files
    assert str(configuration.RunConfig().lock_file) in files
    assert str(configuration.RunConfig().status_file) in files
    assert str(configuration.BackupConfig().root) in files


def test_every_hook_variable_is_documented():
    from provbackup.work import hooks

    variables = set(re.findall(r"\bPROVBACKUP_[A-Z_]+\b", inspect.getsource(hooks)))
    assert "PROVBACKUP_DN" in variables

    hook_section = sections(CONFIG_PAGE, "SH")["[hooks]"]
    assert variables <= tags(hook_section)
    environment = sections(COMMAND_PAGE, "SH")["ENVIRONMENT"].text
    assert variables <= set(re.findall(r"\bPROVBACKUP_[A-Z_]+\b", environment))


def test_every_config_section_and_key_is_in_provbackup_conf_5():
    headings = sections(CONFIG_PAGE, "SH")
    missing = []
    for section, keys in configuration.known_keys().items():
        title = f"[{section}]"
        if title not in headings:
            missing.append(title)
            continue
        documented = tags(headings[title])
        missing += [f"[{section}] {key}" for key in keys if key not in documented]
    assert missing == [], "undocumented in man/provbackup.conf.5"
    extra = {title for title in headings if title.startswith("[")} - {
        f"[{section}]" for section in configuration.SECTIONS
    }
    assert extra == set(), "sections documented that the code does not know"


def test_every_config_key_is_in_the_sample_config():
    sample = (ROOT / "etc" / "provbackup.conf").read_text()
    written = set()
    section = ""
    for line in sample.splitlines():
        match = re.fullmatch(r"\[(\w+)\]", line.strip())
        if match:
            section = match[1]
            continue
        key = re.match(r"#?(\w+) =", line)
        if key:
            written.add((section, key[1]))
    declared = {(key.section, key.key) for key in configuration.declared_keys()}
    assert declared - written == set(), "keys missing from etc/provbackup.conf"
    assert written - declared == set(), "keys in etc/provbackup.conf the code does not know"


def shown_default(value: object) -> str | None:
    """How the page writes a default ``value``; None for a value it describes in words."""
    if value is None or value == "" or value == ():
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple) and all(isinstance(pair, tuple) for pair in value):
        return ", ".join(f"{name} {count}" for name, count in value)  # [rsnapshot] retain
    if isinstance(value, tuple) and all(isinstance(word, str) for word in value):
        return " ".join(value)  # [ldap] uri
    if isinstance(value, int | str | Path):
        return str(value)
    return None


def test_every_default_in_provbackup_conf_5_matches_the_code():
    headings = sections(CONFIG_PAGE, "SH")
    checked, wrong = 0, []
    for key in configuration.declared_keys():
        (item,) = [
            item for item in headings[f"[{key.section}]"].items if key.key in item.tag.split(", ")
        ] or [None]
        assert item is not None, f"[{key.section}] {key.key}"
        assert "Default:" in item.body or "Required." in item.body, f"[{key.section}] {key.key}"
        if key.setting.required or key.default is dataclasses.MISSING:
            continue
        expected = shown_default(key.default)
        said = item.body.split("Default:", 1)[1].strip()
        if expected is None:
            ok = said.startswith(("none", "empty"))
        else:
            ok = said.removesuffix(".").strip() == expected or said.startswith(expected + " ")
        checked += 1
        if not ok:
            wrong.append(f"[{key.section}] {key.key}: code {key.default!r}, page {said!r}")
    assert wrong == []
    assert checked >= 30, "the defaults were compared"
