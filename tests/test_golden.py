"""Files made on other machines decode here, bit for bit, or are refused: never wrong bytes.

``tests/golden/`` holds files this repository made (integer models: they must decode anywhere);
``../shared/golden/`` (where present) holds files made on an AVX2-only AMD EPYC by lmzip 0.2.0.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lmzip
from lmzip import api, container
from lmzip.layout import block_layout

OURS = Path(__file__).resolve().parent / "golden"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "golden"
INTEGER_MODELS = ("portable-", "order2.", "smollm2.", "fast.")  # file name prefixes of exact models


def _expected(folder: Path) -> dict[str, str]:
    """file name -> SHA-256 of its original (SHA256SUMS names the original or the .lmz's middle part)."""
    sums = dict(reversed(line.split()) for line in (folder / "SHA256SUMS").read_text().splitlines() if line)
    out = {}
    for packed in sorted(folder.glob("*.lmz")):
        key = packed.name if packed.name in sums else packed.name.split(".", 1)[1].removesuffix(".lmz")
        out[packed.name] = sums[key]
    return out


def _cases(integer: bool):
    """Integer models' files (in the default run), or float ones (SmolLM2 and online decode at tens
    of tokens a second on an AVX2 CPU: with the slow tests)."""
    cases = [(OURS, name, digest) for name, digest in _expected(OURS).items()]
    if (SHARED / "SHA256SUMS").exists():
        cases += [(SHARED, name, digest) for name, digest in _expected(SHARED).items()]
    return [pytest.param(*case, id=case[1], marks=() if integer else pytest.mark.slow)
            for case in cases if case[1].startswith(INTEGER_MODELS) == integer]


@pytest.mark.parametrize("folder,name,digest", _cases(integer=True))
def test_integer_golden_files_decode_exactly(folder, name, digest):
    assert hashlib.sha256(lmzip.decompress((folder / name).read_bytes())).hexdigest() == digest


# 0.2.0 recorded no kernel path: its float files were made where torch ran its avx2 kernels (SHARED's README)
KERNELS_OF_0_2_0 = "avx2"


def _made_with_kernels(blob: bytes) -> str:
    return api.read_header(io.BytesIO(blob)).settings.kernels or KERNELS_OF_0_2_0


@pytest.mark.parametrize("folder,name,digest", _cases(integer=False))
def test_float_golden_files_decode_where_torch_runs_the_kernels_that_made_them(folder, name, digest):
    from lmzip.models.float.torch_base import cpu_kernels

    blob = (folder / name).read_bytes()
    if _made_with_kernels(blob) != cpu_kernels():
        pytest.skip(f"made with {_made_with_kernels(blob)} kernels, this machine runs {cpu_kernels()}")
    assert hashlib.sha256(lmzip.decompress(blob)).hexdigest() == digest


_REFUSED = ("import hashlib, sys, lmzip, torch\n"
            "from lmzip.errors import ChecksumError, FingerprintMismatch\n"
            "print(torch.backends.cpu.get_cpu_capability().lower())\n"
            "try:\n"
            "    print(hashlib.sha256(lmzip.decompress(open(sys.argv[1], 'rb').read())).hexdigest())\n"
            "except (FingerprintMismatch, ChecksumError) as exc:\n"
            "    print('refused:', exc)")


@pytest.mark.parametrize("folder,name,digest", _cases(integer=False))
def test_float_golden_files_are_refused_where_torch_runs_other_kernels(folder, name, digest):
    """As on a CPU of another kind: torch held to other kernels than the maker's (ATEN_CPU_CAPABILITY).
    The file is refused, saying why; never decoded into other bytes."""
    other = "default" if _made_with_kernels((folder / name).read_bytes()) != "default" else "avx2"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": other}
    result = subprocess.run([sys.executable, "-c", _REFUSED, str(folder / name)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    runs, outcome = result.stdout.split("\n", 1)
    if runs != other:  # torch cannot run that path here (avx2 asked of a CPU without it)
        pytest.skip(f"torch runs {runs} here, not {other}")
    assert outcome.startswith("refused:"), outcome
    assert "kernel" in outcome or "records no CPU kernel path" in outcome


SCALAR = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
_DIGESTS = ("import hashlib, sys, lmzip, torch\n"
            "print(torch.backends.cpu.get_cpu_capability())\n"
            "for path in sys.argv[2:]:\n"
            "    data = lmzip.decompress(open(path, 'rb').read(), backend=sys.argv[1])\n"
            "    print(path, hashlib.sha256(data).hexdigest())")


@pytest.mark.parametrize("family", ["fast", pytest.param("smollm2", marks=pytest.mark.slow)])
def test_integer_golden_files_decode_on_torch_s_scalar_kernels_in_a_fresh_process(family):
    """As on a CPU of another generation: torch's scalar kernels, oneDNN and MKL held to AVX2. The
    native and numpy backends never call torch (their portable kernels: test_native.py); this is the
    torch backend's check. Two of fast's files, one of them a learning head's (the others decode
    in-process above; on scalar kernels each takes seconds); all of SmolLM2's, with the slow tests."""
    names = [n for n in _expected(OURS) if n.split(".")[0].removeprefix("portable-") == family and ".compact." not in n]
    if family == "fast":
        names = [n for n in names if n.startswith("portable-") or ".adapt." in n]  # and a learning head's
    assert names
    r = subprocess.run([sys.executable, "-c", _DIGESTS, "torch", *(str(OURS / n) for n in names)],
                       capture_output=True, env={**os.environ, **SCALAR}, text=True)
    assert r.returncode == 0, r.stderr
    capability, *lines = r.stdout.splitlines()
    assert capability == "DEFAULT"
    assert dict(line.split() for line in lines) == {str(OURS / n): _expected(OURS)[n] for n in names}


def test_the_compact_golden_files_keep_the_compact_header():
    """So the files above prove that compact headers (format 3, a default run's) keep decoding, as
    the other files prove it for format 2."""
    compact = [n for n in _expected(OURS) if ".compact." in n]
    assert len(compact) >= 2
    for name in compact:
        with open(OURS / name, "rb") as f:
            assert api.read_header(f).version == container.COMPACT


def test_the_lead_golden_files_record_their_leads():
    """So the files above prove that leads (0.15.0) keep decoding: the default's through preset 14."""
    with open(OURS / "smollm2.lead.compact.alice29-600.lmz", "rb") as f:
        header = api.read_header(f)
    assert (header.version, header.lead, header.settings.recipe) == (container.COMPACT, 256, 2)
    with open(OURS / "smollm2.lead.mixed.paper1-1k.lmz", "rb") as f:
        header = api.read_header(f)
    assert (header.version, header.lead, header.chunk, header.streams) == (container.FULL, 32, 64, 4)
    assert len(block_layout(header.n_tokens, 64, 4, 32)[0]) > 1  # its first block's streams joined the lead
