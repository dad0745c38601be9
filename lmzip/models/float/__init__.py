"""Float models on torch: lmzip's own GPT (gpt.py, gpt_predictor.py), a lean llama (llama.py),
any Hugging Face causal LM (hf.py), and a model that learns while it codes (online.py). Their files
decode where the same CPU kernel path computes the same floats (torch_base.py records it)."""
