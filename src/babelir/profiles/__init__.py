"""Shipped `babelir compare` profiles (YAML)."""
