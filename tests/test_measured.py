"""Measured choices (models/base.py measured_choice): kept with their date and margin, measured
again when old, sooner when the options were close, and entries without a date at once; the
float dtype follows the kernels torch runs, not the CPU's flags alone."""

from __future__ import annotations

import json
import time

import pytest

from lmzip.models import base
from lmzip.models.float import torch_base


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMZIP_CACHE", str(tmp_path))
    return tmp_path / "kernels.json"


def _entries(path):
    return json.loads(path.read_text())


def test_a_choice_is_kept_until_it_is_old(cache, monkeypatch):
    calls = []
    measure = lambda: calls.append(1) or base.Measured("a", 3.0)  # noqa: E731
    assert base.measured_choice("k", measure) == "a" and base.measured_choice("k", measure) == "a"
    assert len(calls) == 1 and _entries(cache)["k"]["margin"] == 3.0
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + base.MEASURED_LIFETIME_S + 1)
    base.measured_choice("k", measure)
    assert len(calls) == 2


def test_a_close_choice_is_measured_again_sooner(cache, monkeypatch):
    calls = []
    measure = lambda: calls.append(1) or base.Measured("a", 1.05)  # noqa: E731
    base.measured_choice("k", measure)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + base.CLOSE_LIFETIME_S + 1)
    base.measured_choice("k", measure)
    assert len(calls) == 2
    assert "k" in base.measured_choices()


def test_an_entry_without_a_date_is_measured_again(cache):
    cache.write_text(json.dumps({"k": False}))  # as lmzip 0.8.0 wrote it, maybe measured under load
    assert base.measured_choice("k", lambda: base.Measured(True, 6.0)) is True
    assert _entries(cache)["k"]["value"] is True


@pytest.mark.parametrize("capability,isa,expected", [("AVX512", None, "bf16"), ("AVX2", None, "f32"),
                                                     ("DEFAULT", None, "f32"), ("AVX512", "AVX2", "f32"),
                                                     ("AVX512", "AVX512_CORE_AMX", "bf16")])
def test_bf16_follows_the_kernel_path_not_the_flags(monkeypatch, capability, isa, expected):
    """An AVX-512-BF16 CPU under ATEN_CPU_CAPABILITY=avx2 or ONEDNN_MAX_CPU_ISA=AVX2 runs kernels without bf16."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if isa:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert torch_base.default_float_dtype() == expected


@pytest.mark.parametrize("asked", [None, "avx512"])
def test_torch_dispatch_names_the_kernels_torch_runs_without_importing_it(asked, monkeypatch):
    """The cache key of an integer model's backend choice, found from the CPU's flags and torch's
    override (taken as it is when valid, even above the CPU; ignored when not) without importing
    torch, is the one torch itself gives in a fresh process."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    if asked:
        env["ATEN_CPU_CAPABILITY"] = asked
        monkeypatch.setenv("ATEN_CPU_CAPABILITY", asked)
    truth = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert base._aten_capability(base._cpu_flags()) == truth


def test_an_integer_model_codes_without_importing_torch():
    """torch is 200 MB and ~2 s of every start: an integer model whose backend is settled never
    needs it (here on numpy, as on any machine without the native library)."""
    import subprocess
    import sys

    code = ("import sys, lmzip; data = b'never imports torch ' * 20; "
            "blob = lmzip.compress(data, model='fast', backend='numpy'); "
            "assert lmzip.decompress(blob, backend='numpy') == data; assert 'torch' not in sys.modules, 'torch'")
    subprocess.run([sys.executable, "-c", code], check=True)
