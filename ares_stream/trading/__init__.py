"""Trading: the signal that turns a probability into a target position, the risk limits that may
veto it, and the paper broker that fills market orders against the trade tape (``live.py``, the
exchange broker, comes later). Everything here is synchronous and driven by the engine's events.
"""
