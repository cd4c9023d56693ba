"""``python -m sandbox [DIR] [--acl]``: run a sandbox slapd with TLS until Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import tempfile

from sandbox import Slapd


def main(arguments: list[str]) -> int:
    """Start a sandbox in DIR (default a new temporary directory), print how to reach it."""
    acl = "--acl" in arguments
    folders = [argument for argument in arguments if argument != "--acl"]
    logging.basicConfig(level=logging.DEBUG)
    with Slapd(folders[0] if folders else tempfile.mkdtemp(), tls=True, acl=acl) as server:
        server.add_base()
        print(f"{server!r}\n{server.ldap_settings()}\nCtrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":  # pragma: no cover - manual use
    sys.exit(main(sys.argv[1:]))
