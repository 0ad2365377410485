"""Trading: the signal that turns a probability into a target position, the risk limits that may
veto it, the paper broker that fills market orders against the trade tape, and the live broker
(``live.py``) that sends the same decisions to a Binance-compatible exchange. The paper side is
synchronous and driven by the engine's events; only ``live.py`` imports an order client.
"""
