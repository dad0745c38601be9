"""Integer-exact models: the arithmetic (arithmetic.py, tables.py), its two families (gpt.py for
lmzip's own ``fast``, llama.py for SmolLM2 and the GGUF architectures), the numpy and torch array
backends (ops.py), guessed tokens (speculate.py) and the float GPT's quantization (quantize.py).
Every number is the same on any backend, machine and thread count."""
