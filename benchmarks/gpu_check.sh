#!/usr/bin/env bash
# The integer SmolLM2 on a GPU: the same bytes as on the CPU, both ways, and its speed there.
#
#   bash benchmarks/gpu_check.sh [sample]        (from the repository root, after `make install`)
#
# 1. compresses the sample on the CPU and on the GPU: the two files must be identical;
# 2. decodes the CPU's file on the GPU and the GPU's file on the CPU: both must give the sample back;
# 3. prints the integer SmolLM2's tokens/s on the GPU: whole-chunk passes (compression) and lockstep
#    steps (decompression) at 64, 128 and 256 streams.
set -euo pipefail
PY=${PY:-.venv/bin/python}
SAMPLE=${1:-demo/sample.txt}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
lmzip() { "$PY" -m lmzip.cli "$@"; }

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
lmzip compress -q -c --model smollm2 --device cpu "$SAMPLE" > "$tmp/cpu.lmz"
lmzip compress -q -c --model smollm2 --device cuda "$SAMPLE" > "$tmp/gpu.lmz"
cmp "$tmp/cpu.lmz" "$tmp/gpu.lmz" && echo "compressed on CPU and GPU: identical files"
lmzip decompress -q -c --device cuda "$tmp/cpu.lmz" | cmp - "$SAMPLE" && echo "CPU -> GPU: exact"
lmzip decompress -q -c --device cpu "$tmp/gpu.lmz" | cmp - "$SAMPLE" && echo "GPU -> CPU: exact"

"$PY" - <<'PYTHON'
import time

import numpy as np
import torch

from lmzip.models import load_predictor

predictor = load_predictor("smollm2", device="cuda")
with predictor.running():
    ids = [np.random.default_rng(0).integers(0, 49152, 2048) for _ in range(8)]
    list(predictor.coded_intervals(ids[:1]))  # warm up
    torch.cuda.synchronize()
    start = time.perf_counter()
    list(predictor.coded_intervals(ids))
    torch.cuda.synchronize()
    print(f"whole-chunk passes: {8 * 2048 / (time.perf_counter() - start):,.0f} tokens/s")
    for streams in (64, 128, 256):
        predictor.start(streams, 64)
        tokens = np.zeros(streams, dtype=np.int64)
        for _ in range(4):
            predictor.step(tokens)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(16):
            predictor.step(tokens)
        torch.cuda.synchronize()
        print(f"steps of {streams} streams: {16 * streams / (time.perf_counter() - start):,.0f} tokens/s")
PYTHON
