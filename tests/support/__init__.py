"""Helpers the tests share: factories, hostile values, real receivers. Never a test module."""
