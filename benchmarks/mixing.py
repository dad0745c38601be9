"""The context models mixed with the LM: bits on whole eval files, and what it costs in time.

    python benchmarks/mixing.py [--model fast] [--files canterbury/alice29.txt,...] [--bytes N]

Each file is compressed once with mixing on: the run reports both what the tokens cost as coded
(``nll_bits``) and what the model alone would have cost (``lm_nll_bits``), and the file's size.
A file of several blocks is compressed again with ``independent`` blocks (each with its own
history), to show what the history carried across blocks (the default) gains.
Time: the first ``--timed`` file is compressed and decompressed with mixing on and off,
alternately, and the ratios are given. Writes benchmarks/results/mixing-<model>.md.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip import api, engine, mixing  # noqa: E402
from lmzip.models import load_predictor  # noqa: E402

from integer_smollm2 import cpu_name  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"
FILES = ("canterbury/alice29.txt,canterbury/asyoulik.txt,canterbury/lcet10.txt,canterbury/plrabn12.txt,"
         "calgary/book1,calgary/book2,calgary/news,calgary/paper1,calgary/paper2,calgary/paper3,calgary/paper4,"
         "calgary/paper5,calgary/paper6,calgary/progc,calgary/obj1,calgary/geo,canterbury/sum,canterbury/grammar.lsp")


CLASSICAL = ("gzip -9", "bzip2 -9", "xz -9e", "zstd -19", "zstd -22", "brotli -q11")


def best_classical() -> dict[str, float]:
    """Each whole eval file's smallest classical result (bits/byte) in what `make bench` measured."""
    path = ROOT / "benchmarks" / "results" / "full.json"
    best: dict[str, float] = {}
    for row in (json.loads(path.read_text()) if path.exists() else []):
        if row["compressor"] in CLASSICAL:
            best[row["file"]] = min(best.get(row["file"], 99.0), row["bits_per_byte"])
    return best


def compress(predictor, data: bytes, mix: bool, independent: bool = False) -> tuple[bytes, api.Stats]:
    out = io.BytesIO()
    stats = api.compress_stream(io.BytesIO(data), out, predictor, mix=mix, independent=independent, fallback=False)
    return out.getvalue(), stats


class MixingClock:
    """Seconds spent inside the mixing code (the context models, the mixer, the decisions): timed
    within the very run it is part of, so the VM's drift between runs does not enter the share."""

    NAMES = ("proposal_grid", "mixed_intervals", "decode_mixed")

    def __init__(self):
        self.seconds = 0.0
        self.saved = {name: getattr(engine, name) for name in self.NAMES}
        self.saved_models = {name: getattr(mixing.ContextModels, name) for name in ("predict", "update")}
        for name, f in self.saved.items():
            setattr(engine, name, self._timed(f))
        for name, f in self.saved_models.items():
            setattr(mixing.ContextModels, name, self._timed(f))

    def _timed(self, f):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return run

    def close(self) -> None:
        for name, f in self.saved.items():
            setattr(engine, name, f)
        for name, f in self.saved_models.items():
            setattr(mixing.ContextModels, name, f)


def timed(predictor, data: bytes) -> dict:
    """Seconds compressing and decompressing with mixing on and off, the best of two alternations;
    and the share of the mixed runs' time spent in the mixing code."""
    best: dict = {}
    for _ in range(2):
        for mix in (False, True):
            clock = MixingClock()
            start = time.perf_counter()
            blob, stats = compress(predictor, data, mix)
            best[("compress", mix)] = min(best.get(("compress", mix), 1e9), time.perf_counter() - start)
            compress_share = clock.seconds / (time.perf_counter() - start)
            clock.seconds, start = 0.0, time.perf_counter()
            assert api.decompress(blob, model=predictor) == data
            if mix:
                share = {"compress": compress_share, "decompress": clock.seconds / (time.perf_counter() - start)}
            clock.close()
            best[("decompress", mix)] = min(best.get(("decompress", mix), 1e9), time.perf_counter() - start)
    return {"tokens": stats.tokens, **{f"{way}_{'mix' if mix else 'lm'}": s for (way, mix), s in best.items()},
            **{f"{way}_share": s for way, s in share.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--files", default=FILES)
    parser.add_argument("--bytes", type=int, default=0, help="only the first N bytes of each file (0: whole)")
    parser.add_argument("--timed", default="calgary/paper1", help="the file the time ratios are measured on "
                        "(none: no timing)")
    args = parser.parse_args()
    predictor = load_predictor(args.model)
    size = f"first {args.bytes // 1024} KB" if args.bytes else "whole file"
    classical = {} if args.bytes else best_classical()
    lines = [f"# Mixing: `{args.model}` alone and with the context models", "",
             f"Measured by `benchmarks/mixing.py` on {cpu_name()}; {size}, default chunks and streams, no "
             "fallback. Bits/byte: the negative log-likelihood of the model alone and of the mixture, and the "
             "coded file's size (the mixture's NLL plus the container and a few bytes of coder). The history is "
             "carried across blocks (the default); the file with `--independent` blocks is given for files of "
             "several blocks (= : one block, the same file)."
             + (" Best classical: the smallest of " + ", ".join(CLASSICAL) + " (`make bench`, "
                "`benchmarks/results/full.json`)." if classical else ""), "",
             "| file | bytes | model alone (NLL) | mixed (NLL) | change | file, mixed | file, independent blocks |"
             + (" best classical | mixed / best classical |" if classical else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if classical else "")]
    for name in args.files.split(","):
        data = (EVAL / name).read_bytes()
        data = data[: args.bytes] if args.bytes else data
        blob, stats = compress(predictor, data, True)
        n = len(data)
        several_blocks = stats.tokens > predictor.default_chunk * predictor.default_streams
        independent = f"{8 * len(compress(predictor, data, True, independent=True)[0]) / n:.3f}" if several_blocks else "="
        row = (f"| {name.split('/')[-1]} | {n:,} | {stats.lm_nll_bits / n:.3f} | {stats.nll_bits / n:.3f} | "
               f"{100 * (stats.nll_bits / stats.lm_nll_bits - 1):+.1f} % | {8 * len(blob) / n:.3f} | {independent} |")
        if name in classical:
            row += f" {classical[name]:.3f} | {8 * len(blob) / n / classical[name]:.2f} |"
        print(row, flush=True)
        lines.append(row)
    if args.timed == "none":
        return _write(lines, args.model)
    data = (EVAL / args.timed).read_bytes()
    data = data[: args.bytes] if args.bytes else data
    t = timed(predictor, data)
    lines += ["", f"Time on {args.timed.split('/')[-1]} ({t['tokens']:,} tokens; best of two, alternating). The "
              "last column, the mixing code's share of a mixed run's time, is timed within that run (this VM "
              "drifts ~15 % between runs):", "",
              "| | model alone | mixed | mixed / alone | mixing's share of the mixed run |", "|---|---|---|---|---|"]
    for way in ("compress", "decompress"):
        lm, mix = t[f"{way}_lm"], t[f"{way}_mix"]
        lines.append(f"| {way} | {t['tokens'] / lm:,.0f} tok/s | {t['tokens'] / mix:,.0f} tok/s | {mix / lm:.2f}x time "
                     f"| {100 * t[f'{way}_share']:.1f} % |")
    _write(lines, args.model)


def _write(lines: list[str], model: str) -> None:
    out = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results" / f"mixing-{model}.md").write_text(out)
    print(out)


if __name__ == "__main__":
    main()
