"""Flax Linen modules and the pure functions that models need."""
