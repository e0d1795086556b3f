"""Drivers for the published packages the book compares against (optional dependencies)."""
