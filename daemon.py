#!/usr/bin/env python3
"""The ares-stream daemon entry point: ``python daemon.py --paper [--config FILE] ...``.

The same as ``ares-stream run``; see ``ares_stream/daemon/lifecycle.py`` and docs/deploy.md.
"""

from __future__ import annotations

import sys

from ares_stream.daemon import startup

if __name__ == "__main__":
    startup.install()  # first of all: a SIGTERM during the imports below ends start-up, exit 0
    try:
        from ares_stream.cli import main

        sys.exit(main(["run", *sys.argv[1:]]))
    except startup.StartupInterrupted as stop:  # before cli.main could catch it
        sys.exit(startup.interrupted(stop, "run"))
