"""Prediction = compression, token by token.

``explain`` runs the very loop that compresses (``engine.encode_block``) and
records, for every token, its surprisal -log2 p and the model's top guesses.
The total equals the ``nll_bits`` that compression reports, and the compressed
file is that many bits plus the container and coder overhead.
"""

from __future__ import annotations

import html
import io
import time
from dataclasses import dataclass, field

import numpy as np

from . import engine, layout
from .mixing import CARRIER_NAMES
from .models.base import Predictor
from .tokenize import read_tokens

TOP_K = 5


@dataclass
class TokenInfo:
    text: bytes
    bits: float
    probability: float
    top: list[tuple[bytes, float]] = field(default_factory=list)
    carrier: str = "LM"  # with mixing: the context model that carried the token ("match", "order 2"), else "LM"


@dataclass
class Explanation:
    model: str
    tokens: list[TokenInfo]
    original_bytes: int
    seconds: float

    @property
    def total_bits(self) -> float:
        return float(sum(t.bits for t in self.tokens))

    def by_carrier(self) -> dict[str, tuple[int, float]]:
        """Tokens and their bits, by the model that carried them (LM first, then the most tokens)."""
        totals: dict[str, list] = {}
        for t in self.tokens:
            entry = totals.setdefault(t.carrier, [0, 0.0])
            entry[0] += 1
            entry[1] += t.bits
        order = sorted(totals, key=lambda name: (name != "LM", -totals[name][0]))
        return {name: (totals[name][0], totals[name][1]) for name in order}

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "original_bytes": self.original_bytes,
            "n_tokens": len(self.tokens),
            "total_bits": self.total_bits,
            "bits_per_byte": self.total_bits / self.original_bytes if self.original_bytes else 0.0,
            "by_carrier": {name: {"tokens": n, "bits": bits} for name, (n, bits) in self.by_carrier().items()},
            "tokens": [{"text": t.text.decode("utf-8", "replace"), "bits": t.bits, "p": t.probability,
                        "carrier": t.carrier, "top": [[g.decode("utf-8", "replace"), p] for g, p in t.top]}
                       for t in self.tokens],
        }


def explain(data: bytes, predictor: Predictor, chunk: int | None = None, streams: int | None = None,
            progress=None, mix: bool = True) -> Explanation:
    """Every token's cost as compression pays it: with ``mix`` (integer models), the mixture's; the
    model's own probability of the token is ``TokenInfo.probability``."""
    start = time.perf_counter()
    chunk = chunk or predictor.default_chunk
    streams = streams or predictor.default_streams
    ids, _, _ = read_tokens(predictor.tokenizer, io.BytesIO(data))  # cut into pieces as compression cuts them
    mixed = engine.mix_setting_for(predictor, len(ids), chunk, streams, mix)
    history = engine.History(mixed) if mixed else None  # the file's, across blocks, as compression's
    # the settings compression would pick (a float model's dtype is measured per stream count)
    predictor.plan(min(streams, len(layout.chunk_lengths(len(ids), chunk))) or 1)
    decode = predictor.tokenizer.decode
    infos: list[TokenInfo] = []
    done = 0
    for chunks in engine.split_blocks(ids, chunk, streams):
        block: list[list[TokenInfo]] = [[] for _ in chunks]

        def record(t, symbols, probs, bits, carriers):
            top = np.argpartition(-probs, TOP_K, axis=1)[:, :TOP_K]
            order = np.argsort(-np.take_along_axis(probs, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            sums = probs.sum(axis=1, dtype=np.float64)
            for s, symbol in enumerate(symbols):
                guesses = [(_safe_decode(decode, int(g)), float(probs[s, g] / sums[s])) for g in top[s]]
                block[s].append(TokenInfo(decode([int(symbol)]), float(bits[s]),
                                          float(probs[s, symbol] / sums[s]), guesses, CARRIER_NAMES[int(carriers[s])]))

        def on_step(active):
            nonlocal done
            done += active
            if progress:
                progress(done, len(ids))

        engine.encode_block(predictor, chunks, on_step, record=record, history=history)
        for stream_tokens in block:
            infos.extend(stream_tokens)
    return Explanation(predictor.name, infos, len(data), time.perf_counter() - start)


def _safe_decode(decode, token: int) -> bytes:
    try:
        return decode([token])
    except (ValueError, IndexError):
        return b"<special>"


def _colour(bits: float, worst: float = 16.0) -> str:
    """Green (cheap) through yellow to red (surprising)."""
    x = min(bits / worst, 1.0)
    red, green = int(255 * min(1.0, 2 * x)), int(255 * min(1.0, 2 * (1 - x)))
    return f"#{red:02x}{green:02x}40"


def render_terminal(result: Explanation, console=None) -> None:
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    text = Text()
    for t in result.tokens:
        text.append(t.text.decode("utf-8", "replace"), style=f"on {_colour(t.bits)} black")
    console.print(text)
    console.print(f"[bold]{len(result.tokens):,} tokens, {result.total_bits:,.0f} bits = "
                  f"{result.total_bits / 8:,.0f} bytes, "
                  f"{result.total_bits / max(1, result.original_bytes):.3f} bits/byte[/bold] ({result.model})")
    carriers = result.by_carrier()
    if len(carriers) > 1:
        console.print("carried by: " + ", ".join(f"{name} {n:,} tokens ({bits / max(n, 1):.2f} bits each)"
                                                 for name, (n, bits) in carriers.items()))


def render_html(result: Explanation) -> str:
    spans = []
    for t in result.tokens:
        guesses = "\n".join(f"{g.decode('utf-8', 'replace')!r}: {p:.3f}" for g, p in t.top)
        tip = (f"{t.text.decode('utf-8', 'replace')!r}\np = {t.probability:.4g} (the model's), {t.bits:.2f} bits "
               f"(carried by: {t.carrier})\ntop guesses:\n{guesses}")
        spans.append(f'<span style="background:{_colour(t.bits)}" title="{html.escape(tip)}">'
                     f"{html.escape(t.text.decode('utf-8', 'replace'))}</span>")
    bpb = result.total_bits / max(1, result.original_bytes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>lmzip explain: {html.escape(result.model)}</title>
<style>body{{font-family:sans-serif;margin:2em}} pre{{white-space:pre-wrap;font-family:monospace;line-height:1.5}}
span{{border-radius:2px}} .legend span{{padding:0 .5em}}</style></head><body>
<h1>Prediction = compression</h1>
<p>Model <b>{html.escape(result.model)}</b>: {len(result.tokens):,} tokens, {result.total_bits:,.0f} bits in total
({result.total_bits / 8:,.0f} bytes), {bpb:.3f} bits per byte of {result.original_bytes:,}.
Each token is coloured by its cost, &minus;log<sub>2</sub> p; hover for the model's top guesses.</p>
<p class="legend">{''.join(f'<span style="background:{_colour(b)}">{b} bits</span>' for b in (0, 2, 4, 8, 12, 16))}</p>
<pre>{''.join(spans)}</pre>
</body></html>
"""
