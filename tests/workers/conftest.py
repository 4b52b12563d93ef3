"""Fixtures for the workers' tests. The planted tiny models, their analyses and the real
SmolLM2 copy are shared with the public package's tests: they live in tests/conftest.py."""
