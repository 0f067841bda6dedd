"""GLEAM models: the shared GLEAM-C encoder, its loss, samplers, trainer and evaluation."""
