"""The simulated market, a plug-in the daemon knows nothing about.

:mod:`.simulator` plants a market (stochastic volatility, a flow -> return relationship with
scheduled concept and volatility drifts, optionally a book-imbalance effect), :mod:`.book` keeps
its order book and depth diffs, and :mod:`.frames` formats it as Binance frames;
:mod:`.exchange` is a local Binance-compatible exchange (websocket, REST, signed orders, faults)
that plays a simulated or recorded tape; :mod:`.harness` runs it beside the daemon
(``--feed sim``, ``ares-stream sim-exchange``) and plugs in the tasks that stop the daemon at
the tape's end; :mod:`.demo` scores what the daemon learned against what was planted.
"""
