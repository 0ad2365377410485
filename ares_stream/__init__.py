"""ares-stream: an online streaming learner daemon for crypto markets."""

__version__ = "0.1.0"
