"""Import JAX through here: statistics run in float64, so x64 is switched on before any array exists.

Neural networks choose float32 explicitly in their own parameters and inputs.
"""
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

__all__ = ["jax", "jnp"]
