"""Predictive customer models: BG/NBD purchase counts and Gamma-Gamma order values."""
