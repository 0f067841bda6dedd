"""Dagster assets: a few lines each, calling orchestration.stages (which calls the libraries)."""
