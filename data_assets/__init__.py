"""Data assets: dataset adapters, the embedded default dataset, validation and GLEAM-X data.

Plain library code: no Dagster import anywhere below this package.
"""
