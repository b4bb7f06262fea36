"""Experiment binaries: one per task family, over one shared train loop."""
