"""Test support: local servers that speak real venue protocols (the real clients are pointed at them)."""
