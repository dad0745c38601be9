"""Benchmark lmzip's models against classical compressors.

For every file x compressor: compressed bytes, bits per byte, compress and
decompress seconds, peak memory. lmzip rows also report nll_bits and the ratio
compressed bits / nll_bits (prediction = compression, in numbers). Every figure
is reported only after its file decompressed back to the exact input.

    python benchmarks/bench.py --quick          # first 32 KB of every eval file
    python benchmarks/bench.py                  # whole files (long; resumable)

Results are cached per file x compressor x version in benchmarks/results/cache/,
so an interrupted run resumes; tables and plots go to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "eval"
RESULTS = ROOT / "benchmarks" / "results"
QUICK_BYTES = 32 * 1024
BATCH_BYTES = 1 << 20  # lmzip rows are cached after each part of this many bytes (one process each way)
ENGLISH = ["alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt", "book1", "book2", "paper1", "news",
           "dickens"]


# ---------------------------------------------------------------- classical
def _library_rows():
    rows = {
        "gzip -9": (lambda d: gzip.compress(d, 9, mtime=0), gzip.decompress, "stdlib"),
        "bzip2 -9": (lambda d: bz2.compress(d, 9), bz2.decompress, "stdlib"),
        "xz -9e": (lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME), lzma.decompress, "stdlib"),
    }
    try:
        import zstandard

        for level in (19, 22):
            rows[f"zstd -{level}"] = (
                lambda d, lv=level: zstandard.ZstdCompressor(level=lv).compress(d),
                lambda c: zstandard.ZstdDecompressor().decompress(c), f"zstandard {zstandard.__version__}")
    except ImportError:
        pass
    try:
        import brotli

        rows["brotli -q11"] = (lambda d: brotli.compress(d, quality=11), brotli.decompress,
                               f"brotli {getattr(brotli, '__version__', '')}")
    except ImportError:
        pass
    return rows


def _tool_rows():
    """Command-line compressors, when installed: (compress argv, decompress argv, suffix)."""
    rows = {}
    if shutil.which("bzip3"):
        rows["bzip3"] = (["bzip3", "-e", "-f", "{src}", "{dst}"], ["bzip3", "-d", "-f", "{dst}", "{out}"])
    seven = shutil.which("7z") or shutil.which("7zz") or shutil.which("7za")
    if seven:
        rows["7z PPMd"] = ([seven, "a", "-bd", "-m0=PPMd", "-mx=9", "{dst}.7z", "{src}"],
                           [seven, "e", "-bd", "-so", "{dst}.7z"])
    if shutil.which("zpaq"):
        rows["zpaq -m5"] = (["zpaq", "a", "{dst}.zpaq", "{src}", "-m5"], ["zpaq", "x", "{dst}.zpaq", "-to", "{out}"])
    return rows


def run_library(name, data):
    compress, decompress, version = _library_rows()[name]
    t0 = time.perf_counter()
    packed = compress(data)
    t1 = time.perf_counter()
    assert decompress(packed) == data, f"{name} did not round-trip"
    t2 = time.perf_counter()
    return {"compressed_bytes": len(packed), "compress_s": t1 - t0, "decompress_s": t2 - t1,
            "version": version}


_MEASURE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
            "sys.exit(r.returncode)")


def _run_child(argv, env=None):
    """Run a command in a fresh process: (seconds, its peak RSS in MiB, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - t0
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode:
        raise RuntimeError(f"{Path(argv[0]).name} failed: {(err[-2:] or ['?'])[0]}")
    peak_kib = int(err[-1].split()[1]) if err and err[-1].startswith("MAXRSS") else 0
    return seconds, peak_kib / 1024, proc.stdout


def run_tool(name, data):
    comp, decomp = _tool_rows()[name]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, out = Path(tmp, "input"), Path(tmp, "packed"), Path(tmp, "output")
        src.write_bytes(data)
        fill = lambda argv: [a.format(src=src, dst=dst, out=out) for a in argv]  # noqa: E731
        c_s, c_rss, _ = _run_child(fill(comp))
        packed = next(p for p in Path(tmp).iterdir() if p.name.startswith("packed"))
        size = packed.stat().st_size
        if name == "zpaq -m5":
            out.mkdir()
        d_s, d_rss, stdout = _run_child(fill(decomp))
        restored = stdout if name == "7z PPMd" else (
            out.read_bytes() if out.is_file() else next(out.rglob("input")).read_bytes())
        assert restored == data, f"{name} did not round-trip"
    return {"compressed_bytes": size, "compress_s": c_s, "decompress_s": d_s, "peak_rss_mib": max(c_rss, d_rss),
            "version": name}


# ---------------------------------------------------------------- lmzip
LMZIP_ENV = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=4294967295"}


def run_lmzip(model, data, threads=None, extra_args=()):
    return run_lmzip_batch(model, {"input": data}, threads, extra_args)["input"]


def run_lmzip_batch(model, items: dict[str, bytes], threads=None, extra_args=()) -> dict[str, dict]:
    """Compress all items in one fresh process and decompress them in another (the model loads once
    per direction); every row comes from a file that decoded back to its exact bytes.
    Seconds and tokens/s are per file, without the model load; peak RSS is the process's."""
    lmzip = [sys.executable, "-m", "lmzip.cli"]
    extra = (["--threads", str(threads)] if threads else []) + list(extra_args)
    with tempfile.TemporaryDirectory() as tmp:
        sources = {}
        for i, (key, data) in enumerate(items.items()):
            sources[key] = Path(tmp, f"{i:03d}")
            sources[key].write_bytes(data)
        _, c_rss, out = _run_child(lmzip + ["compress", *map(str, sources.values()), "--model", model, "--json", "-q",
                                            *extra], LMZIP_ENV)
        packed = [f"{p}.lmz" for p in sources.values()]
        restored = Path(tmp, "restored")
        restored.mkdir()
        for p in packed:
            os.replace(p, restored / Path(p).name)
        _, d_rss, d_out = _run_child(lmzip + ["decompress", *map(str, sorted(restored.iterdir())), "-q", "--json"],
                                     LMZIP_ENV)
        c_stats = {Path(s["file"]).name: s for s in map(json.loads, out.splitlines())}
        d_stats = {Path(s["file"]).name.removesuffix(".lmz"): s for s in map(json.loads, d_out.splitlines())}
        rows = {}
        for key, src in sources.items():
            assert (restored / src.name).read_bytes() == items[key], f"lmzip {model} did not round-trip {key}"
            c, d = c_stats[src.name], d_stats[src.name]
            rows[key] = {"compressed_bytes": c["compressed_bytes"], "compress_s": c["seconds"],
                         "decompress_s": d["seconds"], "nll_bits": c["nll_bits"], "tokens": c["tokens"],
                         "tokens_per_s": c["tokens_per_second"], "header_bytes": c.get("header_bytes"),
                         "fallback_blocks": c.get("fallback_blocks", 0),
                         "decode_tokens_per_s": d["tokens_per_second"], "peak_rss_mib": max(c_rss, d_rss),
                         "version": f"lmzip {_lmzip_version()} {model}"}
    return rows


def split_batch(items: dict, limit: int = BATCH_BYTES) -> list[dict]:
    """Consecutive parts of at most ``limit`` bytes (a bigger file alone): an interrupted whole-file
    run keeps the rows of the parts that finished; the quick run's 32 KB files stay one part."""
    parts, size = [], limit
    for key, data in items.items():
        if size + len(data) > limit:
            parts.append({})
            size = 0
        parts[-1][key] = data
        size += len(data)
    return parts


def _lmzip_version() -> str:
    sys.path.insert(0, str(ROOT))
    import lmzip

    return lmzip.__version__


# ---------------------------------------------------------------- driver
def cache_key(path, data, compressor, version):
    digest = hashlib.sha256(data).hexdigest()[:16]
    return hashlib.sha256(f"{path.name}|{digest}|{compressor}|{version}".encode()).hexdigest()[:24]


def _version(compressor, kind):
    version = {"library": lambda: _library_rows()[compressor][2], "tool": lambda: compressor,
               "lmzip": lambda: f"lmzip {_lmzip_version()} {compressor} {' '.join(_lmzip_args(compressor))}"}[kind]()
    if kind == "lmzip":
        version += f" fp:{_model_fingerprint(compressor)}"
    return version


def _cache_file(path, data, compressor, kind, cache_dir):
    return cache_dir / f"{cache_key(path, data, compressor, _version(compressor, kind))}.json"


def cached_row(path, data, compressor, kind, cache_dir):
    cached = _cache_file(path, data, compressor, kind, cache_dir)
    return json.loads(cached.read_text()) if cached.exists() else None


def store_row(path, data, compressor, kind, cache_dir, row):
    row.update(file=str(path.relative_to(path.parents[1])), compressor=compressor,
               original_bytes=len(data), bits_per_byte=8 * row["compressed_bytes"] / max(1, len(data)))
    cache_dir.mkdir(parents=True, exist_ok=True)
    _cache_file(path, data, compressor, kind, cache_dir).write_text(json.dumps(row))
    return row


def measure(path, data, compressor, kind, cache_dir):
    row = run_library(compressor, data) if kind == "library" else run_tool(compressor, data)
    return store_row(path, data, compressor, kind, cache_dir, row)


def _print_row(path, compressor, row):
    print(f"{path.name:>14} {compressor:>16} {row['bits_per_byte']:.3f} bpb "
          f"({row['compress_s']:.2f}s / {row['decompress_s']:.2f}s)", flush=True)


def _model_of(compressor: str) -> str:
    """'lmzip smollm2 (8 KB)' -> 'smollm2'"""
    return compressor.removeprefix("lmzip ").split(" ")[0]


def _lmzip_args(compressor: str) -> list[str]:
    """Model columns measure the model (every block model-coded, so compressed bits track the NLL);
    a "+fallback" column shows what the CLI gives by default (a block may fall back to xz or stored)."""
    return [] if "+fallback" in compressor else ["--no-fallback"]


def _model_fingerprint(compressor: str) -> str:
    """Changes when a built-in model's weights change, so stale cache rows are not reused."""
    model = _model_of(compressor).removeprefix("online-")  # online-fast starts from fast's weights
    weights = ROOT / "lmzip" / "data" / model / "model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.exists() else "-"


def write_outputs(rows, name, missing=()):
    RESULTS.mkdir(parents=True, exist_ok=True)
    fields = ["file", "compressor", "original_bytes", "compressed_bytes", "bits_per_byte", "compress_s",
              "decompress_s", "peak_rss_mib", "nll_bits", "tokens", "tokens_per_s", "decode_tokens_per_s",
              "fallback_blocks"]
    with open(RESULTS / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
    files = list(dict.fromkeys(r["file"] for r in rows))
    comps = list(dict.fromkeys(r["compressor"] for r in rows))
    table = {(r["file"], r["compressor"]): r for r in rows}
    lines = [f"Bits per byte (lower is better); every entry round-tripped exactly. `{name}` run.", "",
             "| file | " + " | ".join(comps) + " |", "|---|" + "---|" * len(comps)]
    for f in files:
        cells = []
        best = min(table[(f, c)]["bits_per_byte"] for c in comps if (f, c) in table)
        for c in comps:
            r = table.get((f, c))
            cell = "" if r is None else f"{r['bits_per_byte']:.3f}"
            cells.append(f"**{cell}**" if r and r["bits_per_byte"] == best else cell)
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Not measured yet (reported with --cached-only): {', '.join(missing)}."]
    lm = [r for r in rows if r.get("nll_bits")]
    if lm:
        lines += ["", "lmzip: prediction = compression. Model columns code every block with the model "
                  "(`--no-fallback`); the `+fallback` column is the CLI's default, where a block the model would "
                  "code in more bytes than xz -9e or the bytes themselves falls back to them: its ratio drops "
                  "under 1 and its tokens/s then include xz-decoded blocks.",
                  "", "| file | model | tokens | nll bits | compressed bits | ratio | fallback | compress tok/s "
                  "| decompress tok/s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in lm:
            bits = 8 * r["compressed_bytes"]
            fallback = f"{r['fallback_blocks']} block(s)" if r.get("fallback_blocks") else ""
            lines.append(f"| {r['file']} | {r['compressor']} | {r['tokens']:,} | {r['nll_bits']:,.0f} | {bits:,} | "
                         f"{bits / r['nll_bits']:.4f} | {fallback} | {r['tokens_per_s']:,.0f} | "
                         f"{r['decode_tokens_per_s']:,.0f} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    plot(rows, files, comps, name)
    return "\n".join(lines)


def plot(rows, files, comps, name):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    table = {(r["file"], r["compressor"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(8, len(files) * 0.6), 5))
    width = 0.8 / len(comps)
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: no two columns share one
    for i, c in enumerate(comps):
        xs = [j + i * width for j, f in enumerate(files) if (f, c) in table]
        ys = [table[(f, c)]["bits_per_byte"] for f in files if (f, c) in table]
        ax.bar(xs, ys, width, label=c, color=colours[i % len(colours)])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(files))])
    ax.set_xticklabels([Path(f).name for f in files], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("bits per byte")
    ax.set_title(f"lmzip vs classical compressors ({name})")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)  # beside the bars
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}_bpb.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 5))
    for c in comps:
        rs = [r for r in rows if r["compressor"] == c]
        total_in = sum(r["original_bytes"] for r in rs)
        speed = total_in / max(1e-9, sum(r["compress_s"] for r in rs)) / 1024
        bpb = 8 * sum(r["compressed_bytes"] for r in rs) / total_in
        ax.scatter(speed, bpb)
        ax.annotate(c, (speed, bpb), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("compression speed, KiB/s (log)")
    ax.set_ylabel("bits per byte, all files")
    ax.set_title("ratio vs speed")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}_speed.png", dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--files", nargs="*", help="file names (or paths) to include; default all")
    ap.add_argument("--quick", action="store_true", help="first 32 KB of each file")
    ap.add_argument("--models", default="uniform,order0,order2,fast-float,fast",
                    help="lmzip models, comma-separated; 'M +fallback': M with the CLI's default block fallback")
    ap.add_argument("--quick-english-only", default="fast",
                    help="with --quick, these models see only the English texts (keeps the run under 10 minutes)")
    ap.add_argument("--big-models", default="smollm2", help="slow lmzip models, run only on --big-files")
    ap.add_argument("--big-files", default="alice29.txt", help="files for --big-models (comma-separated)")
    ap.add_argument("--big-bytes", type=int, default=8192,
                    help="with --quick, big models see only this many bytes (their rows say so)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--name", default=None)
    ap.add_argument("--cached-only", action="store_true",
                    help="run nothing: report the rows already measured and list the missing ones")
    args = ap.parse_args()

    paths = sorted(p for p in args.corpus.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    if args.files:
        wanted = set(args.files)
        paths = [p for p in paths if p.name in wanted or str(p) in wanted] + [
            Path(f) for f in args.files if Path(f).is_file() and Path(f) not in paths]
    name = args.name or ("quick" if args.quick else "full")
    cache = RESULTS / "cache"
    compressors = [(c, "library") for c in _library_rows()] + [(c, "tool") for c in _tool_rows()]
    missing = [t for t in ("bzip3", "7z PPMd", "zpaq -m5") if t not in _tool_rows()]
    if missing:
        print(f"note: {', '.join(missing)} not installed; skipped (Debian packages bzip3, 7zip, zpaq)")
    models = [m for m in args.models.split(",") if m]
    big = [m for m in args.big_models.split(",") if m]
    big_files = set(args.big_files.split(","))
    found = {}  # (path, compressor) -> row
    order = {}  # (path, compressor) -> position in the table
    batches: dict[str, dict] = {}  # lmzip model -> {path: data} still to run
    missing_rows = []  # with --cached-only: "file: compressor" not measured yet
    for path in paths:
        data = path.read_bytes()[:QUICK_BYTES] if args.quick else path.read_bytes()
        english_only = args.quick and path.name not in ENGLISH
        todo = compressors + [(f"lmzip {m}", "lmzip") for m in models
                              if not (english_only and m in args.quick_english_only.split(","))]
        if path.name in big_files:
            short = args.quick and len(data) > args.big_bytes
            todo += [(f"lmzip {m}" + (f" ({args.big_bytes // 1024} KB)" if short else ""), "lmzip") for m in big]
        for compressor, kind in todo:
            order[path, compressor] = len(order)
            item = data[: args.big_bytes] if compressor.endswith("KB)") else data
            row = cached_row(path, item, compressor, kind, cache)
            if row is None and args.cached_only:
                missing_rows.append(f"{path.name}: {compressor}")
                continue
            if row is None and kind == "lmzip":
                batches.setdefault(compressor, {})[path] = item
                continue
            try:
                row = row or measure(path, data, compressor, kind, cache)
            except Exception as exc:  # one failing compressor must not lose the rest
                print(f"  {path.name} {compressor}: skipped ({exc})", flush=True)
                continue
            found[path, compressor] = row
            _print_row(path, compressor, row)
    for compressor, items in batches.items():
        for part in split_batch(items):
            print(f"{compressor}: {len(part)} files, one process each way", flush=True)
            try:
                results = run_lmzip_batch(_model_of(compressor), part, args.threads, _lmzip_args(compressor))
            except Exception as exc:
                print(f"  {compressor}: skipped ({exc})", flush=True)
                continue
            for path, row in results.items():
                found[path, compressor] = store_row(path, part[path], compressor, "lmzip", cache, row)
                _print_row(path, compressor, row)
    rows = [found[key] for key in sorted(found, key=order.get)]
    print(write_outputs(rows, name, missing_rows))


if __name__ == "__main__":
    main()
