#!/usr/bin/env python3
"""The ares-stream daemon entry point: ``python daemon.py --paper [--config FILE] ...``.

The same as ``ares-stream run``; see ``ares_stream/daemon.py`` and docs/deploy.md.
"""

from __future__ import annotations

import sys

from ares_stream.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
