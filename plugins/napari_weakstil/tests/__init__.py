"""Tests of the napari-weakstil plugin (a package, so its conftest does not clash with tests/conftest.py)."""
