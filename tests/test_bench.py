"""The benchmark driver's bookkeeping (its measurements are what `make bench` prints)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench import cache_key, split_batch  # noqa: E402


def test_whole_file_batches_are_split_so_an_interrupted_run_keeps_finished_parts():
    items = {"a": b"x" * 10, "b": b"x" * 5, "c": b"x" * 20, "d": b"x"}
    parts = split_batch(items, limit=15)
    assert [list(p) for p in parts] == [["a", "b"], ["c"], ["d"]]
    assert {k: v for p in parts for k, v in p.items()} == items
    assert split_batch({}, limit=15) == []


def test_quick_run_stays_one_batch():
    items = {f"f{i}": b"x" * 32 * 1024 for i in range(24)}
    assert len(split_batch(items)) == 1


def test_cache_key_changes_with_data_compressor_and_version():
    path = Path("/corpus/eval/alice29.txt")
    base = cache_key(path, b"data", "lmzip fast", "lmzip 0.2.0")
    assert base == cache_key(path, b"data", "lmzip fast", "lmzip 0.2.0")
    assert len({base, cache_key(path, b"datb", "lmzip fast", "lmzip 0.2.0"),
                cache_key(path, b"data", "lmzip order0", "lmzip 0.2.0"),
                cache_key(path, b"data", "lmzip fast", "lmzip 0.2.1")}) == 4


def test_cached_only_report_names_the_rows_not_measured_yet(tmp_path, monkeypatch):
    import bench

    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    row = {"file": "canterbury/alice29.txt", "compressor": "xz -9e", "original_bytes": 100,
           "compressed_bytes": 40, "bits_per_byte": 3.2, "compress_s": 0.01, "decompress_s": 0.001}
    bench.write_outputs([row], "partial", missing=["xml: lmzip fast-portable"])
    table = (tmp_path / "partial.md").read_text()
    assert "| canterbury/alice29.txt | **3.200** |" in table
    assert "Not measured yet (reported with --cached-only): xml: lmzip fast-portable." in table
    assert "Not measured" not in bench.write_outputs([row], "complete")
