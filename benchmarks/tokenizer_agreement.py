"""Lossless GGUF tokenizers against their reference, on the eval texts.

    python benchmarks/tokenizer_agreement.py GGUF [GGUF ...]      # make bench-tokenizers (the GGUFs of $LMZIP_MODELS)

For each GGUF: lmzip's tokenizer (gguf/files.py save_tokenizer, wrapped by the lossless BPETokenizer)
and transformers' own tokenizer built from the same GGUF metadata tokenize each eval file. Prints,
per file, the tokens, the share of lmzip's ids equal to the reference's (position by position
where the two agree in length, else by a longest-matching-blocks alignment), and whether every file
-- text or binary -- decodes to its own bytes. Writes benchmarks/results/tokenizers.md.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmzip.models.gguf.files import named_ggufs, save_tokenizer  # noqa: E402
from lmzip.models.float.hf import quiet_transformers  # noqa: E402
from lmzip.tokenize import BPETokenizer  # noqa: E402

EVAL = ROOT.parent / "shared" / "corpus" / "eval"
ENGLISH = ["canterbury/alice29.txt", "canterbury/asyoulik.txt", "canterbury/lcet10.txt", "canterbury/plrabn12.txt",
           "calgary/book1", "calgary/book2", "calgary/paper1", "calgary/paper2"]
BINARY = ["canterbury/kennedy.xls", "calgary/geo", "calgary/obj2"]
RESULTS = ROOT / "benchmarks" / "results"


def matching(ours: list[int], reference: list[int]) -> int:
    """How many of our ids stand where the reference has the same id."""
    if len(ours) == len(reference):
        return sum(a == b for a, b in zip(ours, reference))
    blocks = difflib.SequenceMatcher(None, ours, reference, autojunk=False).get_matching_blocks()
    return sum(block.size for block in blocks)


def measure(gguf: Path) -> list[str]:
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        save_tokenizer(gguf, Path(folder))
        ours = BPETokenizer.from_file(Path(folder) / "tokenizer.json", bos_id=0)
        with quiet_transformers():
            reference = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        print(f"{gguf.name}: tokenizers built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows, total, agree = [], 0, 0
    for name in ENGLISH + BINARY:
        data = (EVAL / name).read_bytes()
        ids = ours.encode(data).tolist()
        exact = ours.decode(ids) == data
        if name in ENGLISH:
            expected = reference(data.decode("utf-8", "replace"), add_special_tokens=False)["input_ids"]
            same = matching(ids, expected)
            total, agree = total + len(ids), agree + same
            rows.append(f"| {name} | {len(data):,} | {len(ids):,} | {len(expected):,} | {100 * same / len(ids):.3f} % "
                        f"| {'yes' if exact else 'NO'} |")
        else:
            rows.append(f"| {name} | {len(data):,} | {len(ids):,} | – | – | {'yes' if exact else 'NO'} |")
        print(rows[-1], file=sys.stderr)
    rows.append(f"| **English, all** | | {total:,} | | **{100 * agree / total:.3f} %** | |")
    return [f"## {gguf.name}", "", "| file | bytes | lmzip's tokens | reference's | ids equal | round trip |",
            "|---|---:|---:|---:|---:|---|", *rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ggufs", nargs="*", type=Path, help="GGUF files (default: those of $LMZIP_MODELS)")
    ggufs = parser.parse_args().ggufs or named_ggufs()
    lines = ["# GGUF tokenizers: lmzip's lossless wrapper against transformers' tokenizer of the same GGUF", "",
             "`make bench-tokenizers`. Reference: transformers' tokenizer built from the same GGUF metadata. ",
             "lmzip adds no prefix space before a text (SentencePiece-style references may), and codes as single",
             "bytes what its BPE cannot give back exactly. Binary files check the round trip only.", ""]
    for gguf in ggufs:
        lines += measure(gguf)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tokenizers.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
