"""Gin configs. A package only so that gin resolves `include 'configs/...'` through the
Python path (its package-file reader) from any working directory."""
