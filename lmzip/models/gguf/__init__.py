"""GGUF files as integer-exact predictors: a GGUF's tensors derived into an integer llama
(derive.py), the GGUFs found on disk, converted once and cached (files.py), and the built-in
default, SmolLM2 (smollm2.py)."""
