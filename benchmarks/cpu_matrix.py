"""`make bench-cpu`: every model through one short round trip, natively and under AVX2 emulation.

Each row compresses and decompresses in fresh processes (the CLI, model load excluded from tokens/s)
and checks the bytes. Emulation sets ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2, which gives an AVX-512/AMX machine the vector paths of an AVX2-only
one; on an AVX2 machine both runs are the same. Writes benchmarks/results/cpu.md.

    python benchmarks/cpu_matrix.py [--sample FILE] [--native-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LMZIP = [sys.executable, "-m", "lmzip.cli"]
EMULATE_AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
# (row name, compress options, bytes of the sample)
ROWS = [("fast (integer)", ["--model", "fast"], 65536),
        ("fast-float (default dtype)", ["--model", "fast-float"], 65536),
        ("fast-float --dtype f32", ["--model", "fast-float", "--dtype", "f32"], 65536),
        ("fast-float --dtype bf16", ["--model", "fast-float", "--dtype", "bf16"], 65536),
        ("--online (from scratch)", ["--online"], 65536),
        ("smollm2 (integer)", ["--model", "smollm2"], 8192),
        ("smollm2-float (default dtype)", ["--model", "smollm2-float"], 8192)]


def machine_facts(env: dict) -> dict:
    code = ("import json, torch; from lmzip.models.integer.ops import int8_gemm_pays; "
            "from lmzip.models.float.torch_base import cpu_kernels, default_float_dtype; "
            "print(json.dumps({'kernels': cpu_kernels(), 'fallback float dtype': default_float_dtype(), "
            "'int8 GEMM': int8_gemm_pays(), 'threads': torch.get_num_threads()}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def round_trip(options: list[str], data: bytes, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "sample.txt"
        source.write_bytes(data)
        r = subprocess.run(LMZIP + ["compress", "-q", "--json", str(source), *options], env=env,
                           capture_output=True, text=True)
        if r.returncode:
            return {"error": r.stderr.strip()}
        stats = json.loads(r.stdout)
        source.rename(source.with_suffix(".orig"))
        r = subprocess.run(LMZIP + ["decompress", "--json", str(source) + ".lmz"], env=env,
                           capture_output=True, text=True)
        if r.returncode:
            return {"error": r.stderr.strip()}
        back = json.loads(r.stdout)
        exact = source.read_bytes() == data
    return {"bits_per_byte": stats["bits_per_byte"], "compress": stats["tokens_per_second"],
            "decompress": back["tokens_per_second"], "exact": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=ROOT.parent / "shared/corpus/eval/silesia/dickens")
    parser.add_argument("--native-only", action="store_true", help="skip the emulated run")
    args = parser.parse_args()
    text = args.sample.read_bytes()
    runs = {"native": dict(os.environ)}
    if not args.native_only:
        runs["AVX2 emulation"] = {**os.environ, **EMULATE_AVX2}
    lines = [f"CPU: {platform.processor() or platform.machine()} ({cpu_name()}), {os.cpu_count()} cores; "
             f"sample: first bytes of {args.sample.name}. tokens/s exclude model loading.", ""]
    for run, env in runs.items():
        facts = machine_facts(env)
        lines += [f"## {run}: " + ", ".join(f"{k} {v}" for k, v in facts.items()), "",
                  "| model | bytes | bits/byte | compress tok/s | decompress tok/s | exact |", "|---|---|---|---|---|---|"]
        for name, options, size in ROWS:
            result = round_trip(options, text[:size], env)
            if "error" in result:
                row = f"| {name} | {size:,} | {result['error']} | | | |"
            else:
                row = (f"| {name} | {size:,} | {result['bits_per_byte']:.3f} | {result['compress']:,.0f} | "
                       f"{result['decompress']:,.0f} | {'yes' if result['exact'] else 'NO'} |")
            print(f"{run}: {row}", flush=True)
            lines.append(row)
        lines.append("")
    out = ROOT / "benchmarks/results/cpu.md"
    out.write_text("# Speed on this CPU, every model\n\n" + "\n".join(lines))
    print(f"wrote {out}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
