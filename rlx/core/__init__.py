"""Shared pieces: config base, networks, distributions, running statistics, data types."""
