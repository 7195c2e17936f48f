"""bot4jax: crypto trading research (JAX, batch) and execution (Numba, streaming) in one pipeline."""
__version__ = "0.1.0"
