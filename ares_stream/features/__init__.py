"""Bars, incremental features and delayed labels: O(1) per bar, identical live and in replay."""
