"""The command line: file naming, pipes, refusals, exit codes, JSON."""

import json
import signal
import time
import os
import subprocess
import sys

import pytest

from conftest import SAMPLE_TEXT

DATA = SAMPLE_TEXT.encode()[:3000] + b"\xff\xfe binary tail"


def lmzip(*args, input=None, env=None):
    """The command line in this process (a fresh process only where the environment must differ)."""
    if env is None:
        return run_in_process(*args, input=input)
    return subprocess.run([sys.executable, "-m", "lmzip.cli", *map(str, args)], input=input,
                          capture_output=True, env={**os.environ, **env}, timeout=300)


def run_in_process(*args, input=None):
    from click.testing import CliRunner

    from lmzip.cli import main

    runner = CliRunner()
    with runner.isolation(input=input or b"") as (stdout, stderr, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        sys.stdout.flush()
        sys.stderr.flush()
        return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_bytes(DATA)
    return path


def test_compress_decompress_files(sample, tiny_gpt_dir):
    r = lmzip("compress", sample, "--model", tiny_gpt_dir, "--threads", "1", "--json", "--no-fallback")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    packed = sample.with_name("sample.txt.lmz")
    assert stats["compressed_bytes"] == packed.stat().st_size
    assert stats["original_bytes"] == len(DATA) and stats["model"] == str(tiny_gpt_dir)
    assert stats["bits_per_byte"] == pytest.approx(8 * stats["compressed_bytes"] / len(DATA))
    assert stats["overhead"] == pytest.approx(8 * stats["compressed_bytes"] / stats["nll_bits"] - 1)
    assert 0 < stats["overhead"] < 0.1  # a few dozen bytes of header and coder ends
    assert 0 < stats["tokens"] <= len(DATA) and stats["tokens_per_second"] > 0 and stats["seconds"] > 0
    sample.unlink()
    r = lmzip("decompress", packed)
    assert r.returncode == 0, r.stderr
    assert sample.read_bytes() == DATA
    assert packed.exists()  # kept without --rm


def test_stdin_to_stdout(tiny_gpt_dir):
    r = lmzip("compress", "--model", tiny_gpt_dir, "--threads", "1", "--no-fallback", input=DATA)
    assert r.returncode == 0, r.stderr
    assert r.stdout[:3] == b"LMZ"
    back = lmzip("decompress", "-", input=r.stdout)
    assert back.returncode == 0, back.stderr
    assert back.stdout == DATA


def test_refuses_to_overwrite_without_force(sample):
    target = sample.with_name("sample.txt.lmz")
    target.write_bytes(b"precious")
    r = lmzip("compress", sample, "--model", "order0")
    assert r.returncode == 1
    assert b"already exists" in r.stderr
    assert target.read_bytes() == b"precious"
    r = lmzip("compress", sample, "--model", "order0", "-f")
    assert r.returncode == 0, r.stderr
    assert target.read_bytes()[:3] == b"LMZ"


def test_rm_removes_input_only_after_success(sample, tmp_path):
    r = lmzip("compress", sample, "--model", "order2", "--rm")
    assert r.returncode == 0, r.stderr
    assert not sample.exists()
    r = lmzip("decompress", tmp_path / "sample.txt.lmz", "--rm")
    assert r.returncode == 0
    assert sample.read_bytes() == DATA
    assert not (tmp_path / "sample.txt.lmz").exists()


def test_output_option_and_test_and_info(sample, tmp_path):
    out = tmp_path / "x.bin"
    assert lmzip("compress", sample, "-m", "order0", "-o", out).returncode == 0
    r = lmzip("test", out)
    assert r.returncode == 0, r.stderr
    info = json.loads(lmzip("info", out, "--json").stdout)
    assert info["model"] == "order0" and info["original_bytes"] == len(DATA)
    r = lmzip("decompress", out)  # no .lmz suffix and no -o: refuse
    assert r.returncode == 1 and b"suffix" in r.stderr


@pytest.mark.parametrize("content,code,words", [
    (b"", 2, b"not an .lmz"),
    (b"hello, not compressed", 2, b"not an .lmz"),
    (b"LMZ\x09\x00", 2, b"unsupported"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, content, code, words):
    path = tmp_path / "bad.lmz"
    path.write_bytes(content)
    r = lmzip("decompress", path)
    assert r.returncode == code
    assert words in r.stderr
    assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


def test_missing_input(tmp_path):
    r = lmzip("compress", tmp_path / "nope.txt", "-m", "order0")
    assert r.returncode == 1 and b"no such file" in r.stderr


def test_unknown_model_is_a_clear_error(sample):
    r = lmzip("compress", sample, "-m", "no-such-model-anywhere")
    assert r.returncode == 3
    assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") == 1


def test_float_files_in_fresh_processes_adopt_threads_and_refuse_other_cpu_kernels(sample, tiny_gpt_dir, tmp_path):
    """Decompression adopts the file's thread count, so another default round-trips. A float model's
    numbers also depend on the CPU's kernel path: the header records it, and a decoder on another path
    refuses (exit 3, one line) instead of decoding wrong bytes. ATEN_CPU_CAPABILITY=default gives
    torch's scalar kernels, as on an older CPU."""
    from lmzip.container import Header
    from lmzip.models.float.torch_base import cpu_kernels

    packed = tmp_path / "t.lmz"
    r = lmzip("compress", sample, "-m", tiny_gpt_dir, "--threads", "2", "--no-fallback", "-o", packed)
    assert r.returncode == 0, r.stderr
    r = lmzip("decompress", packed, "-c", env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == DATA
    with open(packed, "rb") as f:
        assert Header.read(f).settings.kernels == cpu_kernels()
    if cpu_kernels() == "default":
        pytest.skip("this machine already runs torch's scalar kernels")
    r = lmzip("decompress", packed, "-o", tmp_path / "out", env={"ATEN_CPU_CAPABILITY": "default"})
    assert r.returncode == 3 and r.stderr.count(b"\n") == 1
    assert f"made with {cpu_kernels()} kernels, this machine runs default".encode() in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_partial_output(tmp_path, sig):
    big = tmp_path / "big.txt"
    big.write_bytes(SAMPLE_TEXT.encode() * 400)
    proc = subprocess.Popen([sys.executable, "-m", "lmzip.cli", "compress", str(big), "-m", "order2"],
                            stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.05)  # wait until it is writing its temporary output, however loaded the machine
    time.sleep(0.3)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_unwritable_output_is_a_clear_error(sample, tmp_path):
    r = lmzip("compress", sample, "-m", "order0", "-o", tmp_path / "no" / "such" / "dir" / "x.lmz")
    assert r.returncode == 1 and b"cannot write" in r.stderr


def test_damaged_payload_leaves_no_output(sample, tmp_path):
    packed = tmp_path / "d.lmz"
    assert lmzip("compress", sample, "-m", "order0", "-o", packed).returncode == 0
    blob = bytearray(packed.read_bytes())
    blob[-10] ^= 0xFF
    packed.write_bytes(bytes(blob))
    r = lmzip("decompress", packed, "-o", tmp_path / "restored")
    assert r.returncode == 2, r.stderr
    assert not (tmp_path / "restored").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.lmz", "sample.txt"]


def test_write_failure_removes_the_temporary_file(tmp_path):
    from lmzip.cli.files import atomic_output
    from lmzip.errors import InputOutputError

    target = tmp_path / "out.lmz"
    with pytest.raises(OSError, match="No space left on device"):
        with atomic_output(target, force=False) as out:
            out.write(b"partial")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"keep me")
    with pytest.raises(InputOutputError, match="already exists"):
        with atomic_output(target, force=False):
            pass
    assert target.read_bytes() == b"keep me"


def test_while_data_goes_to_stdout_other_prints_go_to_stderr(capfdbinary):
    """What a library prints on stdout (Ray: a worker that died) must not land inside -c's data."""
    import threading

    from lmzip.cli.files import atomic_output

    with atomic_output(None, force=True) as out:
        out.write(b"DATA")
        out.flush()
        printer = threading.Thread(target=lambda: print("a worker died"))  # as Ray's listener thread prints
        printer.start()
        printer.join()
    print("after")
    captured = capfdbinary.readouterr()
    assert captured.out == b"DATAafter\n" and captured.err == b"a worker died\n"


def test_several_files_load_the_model_once_and_a_bad_one_does_not_stop_the_rest(tmp_path):
    a, b, missing = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "missing.txt"
    a.write_bytes(b"first file " * 50)
    b.write_bytes(bytes(range(256)) * 3)
    r = lmzip("compress", "--model", "order2", "--json", str(a), str(missing), str(b))
    assert r.returncode == 1 and "missing.txt: no such file" in r.stderr.decode()
    reports = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [x["file"] for x in reports] == [str(a), str(b)]
    a.unlink(), b.unlink()
    r = lmzip("decompress", str(tmp_path / "a.txt.lmz"), str(tmp_path / "b.txt.lmz"))
    assert r.returncode == 0, r.stderr
    assert a.read_bytes() == b"first file " * 50 and b.read_bytes() == bytes(range(256)) * 3
    r = lmzip("decompress", "-c", str(tmp_path / "a.txt.lmz"), str(tmp_path / "b.txt.lmz"))
    assert r.returncode == 1 and "single input" in r.stderr.decode()


def test_version():
    r = lmzip("--version")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    import lmzip as package

    assert out.startswith(f"lmzip {package.__version__}\n") and "format 3 (reads 1, 2, 3)" in out and "torch " in out
    assert "smollm2" in out and lmzip("-V").stdout == r.stdout


def test_version_lists_the_choices_for_the_kernels_in_use(tmp_path, monkeypatch):
    """Choices measured under an emulated CPU (another ATEN_CPU_CAPABILITY) are counted, not listed."""
    import importlib
    import json
    import time

    app = importlib.import_module("lmzip.cli.app")  # the module, not the Typer app lmzip.cli exports

    now = time.time()
    (tmp_path / "kernels.json").write_text(json.dumps({
        "int8 GEMM, AVX2, torch 2.13.0+cpu, 2 threads": {"value": True, "measured": now, "margin": 3.0},
        "extra row cost of 1 streams, model ab, native AVX2, 2 threads": {"value": 0.3, "measured": now},
        "int8 GEMM, DEFAULT, torch 2.13.0+cpu, 2 threads": {"value": False, "measured": now, "margin": 9.0}}))
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    monkeypatch.setattr("lmzip.models.base.torch_dispatch", lambda: "avx2, torch 2.13.0+cpu")
    monkeypatch.setattr("lmzip.models.native.load", lambda: type("Library", (), {"kernel_name": "AVX2"})())
    lines = app._measured_lines()
    assert lines[0].endswith(": 2") and len(lines) == 4
    assert "AVX2, torch" in lines[1] and "native AVX2" in lines[2] and "and 1 measured under other" in lines[3]


@pytest.mark.parametrize("args", [["compress", "--bogus"], ["frobnicate"], ["compress", "--level", "12"]])
def test_usage_errors_exit_1_in_one_line(args):
    r = lmzip(*args)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr and r.stderr.startswith(b"lmzip: ")


def test_outputs_keep_the_inputs_mode_and_times(sample, tmp_path):
    os.chmod(sample, 0o640)
    os.utime(sample, (1_000_000_000, 1_200_000_000))
    assert lmzip("compress", sample, "-m", "order0").returncode == 0
    packed = tmp_path / "sample.txt.lmz"
    assert (packed.stat().st_mode & 0o777, packed.stat().st_mtime) == (0o640, 1_200_000_000)
    sample.unlink()
    assert lmzip("decompress", packed).returncode == 0
    assert (sample.stat().st_mode & 0o777, sample.stat().st_mtime) == (0o640, 1_200_000_000)
    assert sample.read_bytes() == DATA


def test_levels_choose_model_and_chunk(sample, tmp_path):
    from lmzip.container import Header

    def header(name):
        with open(tmp_path / name, "rb") as f:
            return Header.read(f)

    assert lmzip("compress", "-1", sample, "-o", tmp_path / "one.lmz").returncode == 0
    assert header("one.lmz").model == "order2"
    r = lmzip("compress", sample, "--level", "2", "--threads", "1", "-o", tmp_path / "two.lmz")
    assert r.returncode == 0, r.stderr
    assert (header("two.lmz").model, header("two.lmz").chunk) == ("fast", 128)
    assert header("two.lmz").mix.endswith("-c")  # mixing's history carried across blocks
    r = lmzip("compress", sample, "-2", "-i", "--threads", "1", "-o", tmp_path / "independent.lmz")
    assert r.returncode == 0 and not header("independent.lmz").mix.endswith("-c"), r.stderr
    assert lmzip("decompress", tmp_path / "independent.lmz", "-c").stdout == DATA
    r = lmzip("compress", "-2", sample, "-m", "order0", "-o", tmp_path / "over.lmz")  # --model overrides a level
    assert header("over.lmz").model == "order0"
    assert lmzip("decompress", tmp_path / "two.lmz", "-c").stdout == DATA


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_no_input_at_a_terminal_prints_help(command):
    import pty

    controller, terminal = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "lmzip.cli", command], stdin=terminal, capture_output=True,
                           timeout=60)
    finally:
        os.close(terminal), os.close(controller)
    assert r.returncode == 1 and b"Usage:" in r.stdout and b"Traceback" not in r.stderr


def test_a_directory_without_workers(tmp_path):
    tree = tmp_path / "in"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(DATA[:500])
    (tree / "sub" / "b.txt").write_bytes(DATA[500:900])
    r = lmzip("compress", "-r", tree, "-m", "order2", "--rm", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["files"] == 2 and summary["failed"] == 0
    assert sorted(p.name for p in tree.rglob("*")) == ["a.txt.lmz", "b.txt.lmz", "sub"]
    assert lmzip("decompress", "-r", tree, "--rm", "-q").returncode == 0
    assert (tree / "sub" / "b.txt").read_bytes() == DATA[500:900] and (tree / "a.txt").read_bytes() == DATA[:500]


def test_a_chunk_longer_than_the_model_sees_is_refused(sample):
    r = lmzip("compress", sample, "-m", "fast", "--chunk", "100000", "-c")
    assert r.returncode == 1 and b"exceeds the model's context" in r.stderr and r.stdout == b""


def test_info_on_a_damaged_file(sample, tmp_path):
    packed = tmp_path / "ok.lmz"
    assert lmzip("compress", sample, "-m", "order2", "-o", packed).returncode == 0
    truncated = tmp_path / "truncated.lmz"
    truncated.write_bytes(packed.read_bytes()[:-20])
    info = json.loads(lmzip("info", truncated, "--json").stdout)
    assert info["model"] == "order2" and str(info["blocks"]).startswith("unreadable")
    garbage = tmp_path / "garbage.lmz"
    garbage.write_bytes(b"LMZ" + os.urandom(40))
    r = lmzip("info", garbage)
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr


def test_explain_on_the_command_line_costs_what_compression_does(sample):
    explained = json.loads(lmzip("explain", sample, "-m", "order2", "--json").stdout)
    compressed = json.loads(lmzip("compress", sample, "-m", "order2", "-c", "--json", "--no-fallback").stderr)
    assert explained["total_bits"] == pytest.approx(compressed["nll_bits"], rel=1e-9)
    assert "".join(t["text"] for t in explained["tokens"]).encode("utf-8", "replace")[:100] == DATA[:100]
