"""The commands that teach: explain (what every token costs) and generate (the decoder fed noise)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ..models import DEFAULT_MODEL
from .app import BackendOpt, ChunkOpt, DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, QuietOpt, StreamsOpt, ThreadsOpt, app
from .files import open_input
from .running import ProgressBar, errors_as_messages

@app.command()
def explain(
    file: Path = typer.Argument(..., help="file to explain"),
    model: Optional[str] = ModelOpt,
    compare: Optional[str] = typer.Option(None, "--compare", metavar="MODEL", help="a second model on the same "
                                          "text: what it saves or loses against --model, span by span"),
    device: Optional[str] = DeviceOpt,
    dtype: Optional[str] = DtypeOpt,
    threads: Optional[int] = ThreadsOpt,
    chunk: Optional[int] = ChunkOpt,
    streams: Optional[int] = StreamsOpt,
    as_json: bool = JsonOpt,
    html_out: Optional[Path] = typer.Option(None, "--html", help="write a self-contained HTML page"),
    no_mix: bool = typer.Option(False, "--no-mix", help="the model alone's costs (integer models mix by default)"),
    quiet: bool = QuietOpt,
):
    """Show what every token costs: -log2 p under the model, as compression pays it."""
    from .. import explain as ex
    from ..models import load_predictor

    with errors_as_messages():
        with open_input(file) as source:
            data = source.read()
        results = []
        for name in [model or DEFAULT_MODEL] + ([compare] if compare else []):
            predictor = load_predictor(name, dtype=dtype, device=device, threads=threads)
            with ProgressBar(f"explaining ({name})", quiet) as progress:
                results.append(ex.explain(data, predictor, chunk=chunk, streams=streams, progress=progress,
                                          mix=not no_mix))
        result = ex.compare(*results) if compare else results[0]
        if html_out is not None:
            page = ex.render_compare_html(result) if compare else ex.render_html(result)
            html_out.write_text(page, encoding="utf-8")
        if as_json:
            print(json.dumps(result.to_dict()))
        elif html_out is None or not quiet:
            (ex.render_compare_terminal if compare else ex.render_terminal)(result)


@app.command()
def generate(
    model: Optional[str] = ModelOpt,
    tokens: int = typer.Option(100, "--tokens", "-n", min=0, help="tokens to decode"),
    seed: int = typer.Option(0, "--seed", "-s", min=0, help="the random bits' seed: with an integer model the "
                             "same text on every machine"),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="text to continue, any bytes (coded as "
                                         "compression codes it; the random bits are decoded after it)"),
    temperature: float = typer.Option(1.0, "--temperature", "-t", min=0.01, help="raise every probability to "
                                      "1/T and normalise: another model (T < 1 bolder, T > 1 wilder); its bits are "
                                      "counted under it, and only T = 1 is promised the same on every machine"),
    backend: Optional[str] = BackendOpt,
    no_mix: bool = typer.Option(False, "--no-mix", help="the model alone, without the context models compression "
                                "mixes in"),
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Decompress random bits: the decoder writes a sample from the model, and says how many bits it read."""
    from ..generate import generate as sample
    from ..models import load_predictor

    with errors_as_messages():
        predictor = load_predictor(model or DEFAULT_MODEL, backend=backend)
        with ProgressBar("generating", quiet) as progress:
            result = sample(predictor, tokens, seed=seed, prompt=os.fsencode(prompt or ""), temperature=temperature,
                            mix=not no_mix, progress=progress)
        if tokens == 0:
            return  # nothing asked, nothing printed
        if as_json:
            print(json.dumps(result.to_dict()))
            return
        sys.stdout.buffer.write(result.prompt + result.text + b"\n")
        sys.stdout.flush()
        if not quiet:
            print(f"lmzip: {result.tokens} tokens decoded from seed {seed}'s random bits, which they used "
                  f"{result.bits:,.0f} of ({result.bits / result.tokens:.2f} bits a token under {result.model}): "
                  "compressing the text costs about as much", file=sys.stderr)
