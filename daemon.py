#!/usr/bin/env python3
"""The ares-stream daemon entry point (``python daemon.py --paper``).

The live daemon — websocket ingestor, paper broker, checkpoints, systemd notify — is built by the
daemon issue on top of the same engine that ``ares-stream replay`` drives. Until then this entry
point says so plainly instead of pretending.
"""

from __future__ import annotations

import sys


def main() -> int:
    print("daemon.py: the live daemon is not built yet; use `ares-stream replay` "
          "(see README.md)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
