"""Learners: River online models with ADWIN, warm-start XGBoost boosters, the model registry."""
