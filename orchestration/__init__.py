"""Thin wiring: the config composition, the `gleam` CLI, Dagster definitions. No model code here."""
