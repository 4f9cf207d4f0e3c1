"""lexicon: a deep-learning course as exact, reproducible JAX experiments."""
