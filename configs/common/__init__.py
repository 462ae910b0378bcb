"""Shared gin includes (see configs/__init__.py)."""
