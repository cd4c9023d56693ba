"""Helpers of the follower's tests: a real ``provbackup watch`` process, a TCP proxy, waits.

Every wait is bounded (:data:`WAIT`) and none asserts a time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from support import REPOSITORY, Setup, read_entry, write_config

from sandbox import Slapd, account_entry

WAIT = 60.0


def wait_for(what: str, condition: Callable[[], object], timeout: float = WAIT) -> object:
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def follower_config(tmp_path: Path, server: Slapd, extra: str = "", **ldap: str) -> Setup:
    """A configuration for ``server`` whose post_add/post_modify/post_delete hooks count works.

    Each work appends ``VERB UID`` to ``<tmp_path>/works.log`` (see :func:`works`).
    """
    hook = tmp_path / "count-work"
    hook.write_text(
        f'#!/bin/sh\necho "$PROVBACKUP_ACTION $PROVBACKUP_UID" >> {tmp_path / "works.log"}\n'
    )
    hook.chmod(0o755)
    hooks = "".join(f"post_{verb} = {hook}\n" for verb in ("add", "modify", "delete"))
    return write_config(
        tmp_path, server, extra=f"[hooks]\n{hooks}[watch]\nretry_max = 2\n{extra}", **ldap
    )


def works(tmp_path: Path) -> Counter[str]:
    """How many times each ``VERB UID`` was worked, from the hooks' log."""
    log = tmp_path / "works.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(lines)


def add_order(server: Slapd, uid: str, **options: object) -> str:
    """Add an add order for ``uid`` (uidNumber/gidNumber from it); return its DN."""
    number = int(uid) % 100_000 + 20_000
    options.setdefault("uid_number", number)
    options.setdefault("gid_number", number)
    dn, attributes = account_entry(uid, base_dn=server.accounts_dn, **options)  # type: ignore[arg-type]
    server.add_entries([(dn, attributes)])
    return dn


def mode_of(server: Slapd, dn: str) -> str | None:
    """The entry's sstProvisioningMode, or None."""
    values = read_entry(server, dn).get("sstprovisioningmode")
    return values[0] if values else None


class Watcher:
    """A real ``python -m provbackup watch`` process; its log in ``<directory>/watch-N.log``."""

    count = 0

    def __init__(self, setup: Setup, directory: Path, **variables: str) -> None:
        Watcher.count += 1
        self.log = directory / f"watch-{Watcher.count}.log"
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
        environment.pop("PROVBACKUP_CONFIG", None)
        environment.pop("NOTIFY_SOCKET", None)
        environment.update(variables)
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "provbackup", "--config", str(setup.config), "-v",
                 "watch"],
                stdout=output, stderr=subprocess.STDOUT, env=environment,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_following(self, times: int = 1) -> None:
        """Wait until the follower has completed ``times`` refreshes."""
        wait_for(f"refresh #{times} ({self.log})",
                 lambda: self.text().count("refresh complete") >= times
                 or self.process.poll() is not None)  # fmt: skip
        assert self.process.poll() is None, self.text()

    def stop(self) -> int:
        """SIGTERM, wait (bounded), return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the follower did not stop on SIGTERM: {self.text()}") from None


class Proxy:
    """A TCP proxy on a free port of 127.0.0.1 to ``target_port``; :meth:`stop` drops everything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self.sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Close the listener and every connection (the follower sees its TCP connection end)."""
        self.running = False
        with contextlib.suppress(OSError):  # wakes the accepting thread; the port is closed
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for end in self.sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
