"""The daemon: the asyncio shell around the engine, as a long-running process.

:mod:`.lifecycle` (``Daemon``: startup -> run -> shutdown, checkpoints, signals, the periodic
report job), :mod:`.ingest` (websocket -> engine, REST backfill and warm-up, the recording; also
``ares-stream record``), :mod:`.prometheus` (the metrics endpoint), :mod:`.sdnotify` (systemd's
notify protocol) and :mod:`.startup` (stop signals from the process's first instant).

This file imports nothing: ``daemon.py`` imports :mod:`.startup` before anything heavy, and
importing a submodule runs this file first.
"""
