"""Pretrained backbones under A3: LoRA adapters and the SmolLM2 base read from its PyPI GGUF."""
