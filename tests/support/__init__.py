"""Helpers shared by the tests: plain functions, classes and constants, importable from any test.

Fixtures stay in the `conftest.py` files; fixtures that several directories use are defined in a
module here and registered through `pytest_plugins` in the top-level `tests/conftest.py`.
"""
