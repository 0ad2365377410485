"""Learners: River online models with ADWIN drift detection (batch boosters come later)."""
