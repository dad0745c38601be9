"""Where the integer models come from: a GGUF's tensors derived into an integer llama (derive.py),
the GGUFs found on disk, converted once and cached (files.py), the built-in default, SmolLM2
(smollm2.py), and lmzip's float GPT quantized into the integer ``fast`` (quantize.py)."""
