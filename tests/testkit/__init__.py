"""Helpers shared by the tests (not tests themselves): an in-process CLI runner, a tiny
random sentence-transformers model, and the scripts that the training tests run in
subprocesses. ``tests/`` is on ``sys.path`` through the root ``conftest.py``."""
