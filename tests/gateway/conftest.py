"""The gateway tests use the shared `stack` fixture (tests/conftest.py)."""
