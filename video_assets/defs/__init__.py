"""Thin Dagster definitions over the pure media, model and store code."""
