"""Integer-exact models: the arithmetic (arithmetic.py, tables.py), its two families (gpt.py for
lmzip's own ``fast``, llama.py for SmolLM2 and the GGUF architectures), a model directory's stored
arrays (stored.py), the numpy and torch array backends (ops.py), guessed tokens (speculate.py) and
a head that learns while it codes (adapt.py). Every number is the same on any backend, machine and
thread count."""
