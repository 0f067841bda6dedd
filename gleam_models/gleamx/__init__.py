"""GLEAM-X: a small multimodal LLM that says whether two views show the same place and explains why.

LLaVA-style by default (frozen GLEAM-C vision tower -> spatial tokens -> MLP projector -> a small
instruction-tuned LM with LoRA); an off-the-shelf VLM from a local directory is the other kind.
Heavy modules (torch, transformers, peft) are imported by the submodules, not here.
"""
