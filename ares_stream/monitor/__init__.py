"""``ares-stream monitor``: a read-only live dashboard of a daemon's (or a replay's) database.

``data`` reads what the page shows (through :mod:`ares_stream.store.monitor`, never writing the
file and taking no lock); ``server`` serves the page and pushes each new snapshot to the browsers
as server-sent events; ``static/`` is the page itself (plain HTML, CSS and JavaScript, with uPlot
vendored under ``static/vendor/``: nothing is fetched from the network).
"""
