"""Prediction = compression, token by token.

``explain`` runs the very loop that compresses (``engine.encode_block``) and
records, for every token, its surprisal -log2 p and the model's top guesses.
The total equals the ``nll_bits`` that compression reports, and the compressed
file is that many bits plus the container and coder overhead.
"""

from __future__ import annotations

import bisect
import html
import io
import time
from dataclasses import dataclass, field

import numpy as np

from . import engine, layout
from .mixing import CARRIER_NAMES, History, mix_setting_for
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
    mixed = mix_setting_for(predictor.capabilities.integer, len(ids), chunk, streams, mix)
    history = History(mixed) if mixed else None  # the file's, across blocks, as compression's
    # the settings compression would pick (a float model's dtype is measured per stream count)
    lead = predictor.lead_for(chunk, streams=streams)  # as compression's
    plan = layout.FileLayout.of(len(ids), chunk, streams, lead)
    predictor.plan(plan.first_block_streams)
    decode = predictor.tokenizer.decode
    infos: list[TokenInfo] = []
    done = 0
    for chunks in plan.split(ids):
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

        engine.encode_block(predictor, chunks, on_step, record=record, history=history, lead=lead)
        for stream_tokens in block:
            infos.extend(stream_tokens)
    return Explanation(predictor.name, infos, len(data), time.perf_counter() - start)


@dataclass
class Span:
    """A stretch of the text that both models' tokens tile exactly, and what it cost each."""
    text: bytes
    bits: tuple[float, float]

    @property
    def saving(self) -> float:
        """Bits the second model saves here (negative: it pays more)."""
        return self.bits[0] - self.bits[1]


@dataclass
class Comparison:
    """One text under two models. Spans are single tokens where the models cut the text alike
    (the same tokenizer), else the shortest stretches whose ends are token boundaries of both."""
    first: Explanation
    second: Explanation
    spans: list[Span]

    def by_text(self) -> list[tuple[str, int, float]]:
        """(span text without surrounding spaces, occurrences, total saving), largest saving first:
        names and words the second model knows better add up over their repeats."""
        totals: dict[str, list] = {}
        for span in self.spans:
            key = span.text.decode("utf-8", "replace").strip()
            if key:
                entry = totals.setdefault(key, [0, 0.0])
                entry[0] += 1
                entry[1] += span.saving
        return sorted(((k, n, bits) for k, (n, bits) in totals.items()), key=lambda item: -item[2])

    def to_dict(self, top: int = 10) -> dict:
        ranked = self.by_text()
        return {
            "models": [self.first.model, self.second.model],
            "original_bytes": self.first.original_bytes,
            "total_bits": [self.first.total_bits, self.second.total_bits],
            "bits_per_byte": [e.total_bits / max(1, e.original_bytes) for e in (self.first, self.second)],
            "top_savings": _ranking([r for r in ranked[:top] if r[2] > 0]),
            "top_losses": _ranking([r for r in ranked[::-1][:top] if r[2] < 0]),
            "spans": [{"text": s.text.decode("utf-8", "replace"), "bits": list(s.bits)} for s in self.spans],
        }


def _ranking(items: list[tuple[str, int, float]]) -> list[dict]:
    return [{"text": text, "count": n, "saving_bits": bits} for text, n, bits in items]


def compare(first: Explanation, second: Explanation) -> Comparison:
    """Both explanations of one text, laid side by side on the byte boundaries they share: each
    token falls in the span that ends at the first shared boundary at or after its own end."""
    cuts = sorted(_boundaries(first) & _boundaries(second))
    bits = np.zeros((len(cuts), 2))
    for side, explanation in enumerate((first, second)):
        end = 0
        for token in explanation.tokens:
            end += len(token.text)
            bits[bisect.bisect_left(cuts, end), side] += token.bits
    data = b"".join(t.text for t in first.tokens)
    return Comparison(first, second, [Span(data[start:stop], (float(a), float(b)))
                                      for start, stop, (a, b) in zip([0, *cuts[:-1]], cuts, bits)])


def _boundaries(explanation: Explanation) -> set[int]:
    ends, at = set(), 0
    for token in explanation.tokens:
        at += len(token.text)
        ends.add(at)
    if at != explanation.original_bytes:
        raise ValueError(f"{explanation.model}'s tokens do not spell the text byte for byte: cannot compare")
    return ends


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
        spans.append(_span(t.text, _colour(t.bits), tip))
    bpb = result.total_bits / max(1, result.original_bytes)
    intro = (f"Model <b>{html.escape(result.model)}</b>: {len(result.tokens):,} tokens, {result.total_bits:,.0f} bits "
             f"in total ({result.total_bits / 8:,.0f} bytes), {bpb:.3f} bits per byte of {result.original_bytes:,}. "
             "Each token is coloured by its cost, &minus;log<sub>2</sub> p; hover for the model's top guesses.")
    legend = "".join(f'<span style="background:{_colour(b)}">{b} bits</span>' for b in (0, 2, 4, 8, 12, 16))
    return _page(f"lmzip explain: {result.model}", intro, legend, spans)


def _saving_colour(saving: float, scale: float = 8.0) -> str:
    """Green where the second model saves bits, red where it pays more, white where they agree."""
    x = max(-1.0, min(1.0, saving / scale))
    fade = int(255 * (1 - abs(x)))
    return f"#{fade:02x}ff{fade:02x}" if x >= 0 else f"#ff{fade:02x}{fade:02x}"


def render_compare_html(comparison: Comparison, top: int = 10) -> str:
    first, second = comparison.first.model, comparison.second.model
    spans = [_span(s.text, _saving_colour(s.saving),
                   f"{s.text.decode('utf-8', 'replace')!r}\n{first}: {s.bits[0]:.2f} bits\n{second}: {s.bits[1]:.2f} bits"
                   f"\n{second} saves {s.saving:+.2f} bits") for s in comparison.spans]
    summary = comparison.to_dict(top)
    intro = (f"The same {comparison.first.original_bytes:,} bytes under two models, as compression pays for them: "
             f"<b>{html.escape(first)}</b> {summary['total_bits'][0]:,.0f} bits ({summary['bits_per_byte'][0]:.3f} "
             f"bits/byte), <b>{html.escape(second)}</b> {summary['total_bits'][1]:,.0f} bits "
             f"({summary['bits_per_byte'][1]:.3f} bits/byte). Each span is coloured by the bits "
             f"{html.escape(second)} saves there (green) or loses (red); hover for both costs.")
    legend = "".join(f'<span style="background:{_saving_colour(b)}">{b:+d} bits</span>' for b in (-8, -4, -1, 0, 1, 4, 8))
    tables = "".join(_ranking_table(title, summary[key]) for key, title in (
        ("top_savings", f"Where {second} saves most"), ("top_losses", f"Where {second} pays more")))
    return _page(f"lmzip explain: {first} against {second}", intro, legend, spans, tables)


def _ranking_table(title: str, rows: list[dict]) -> str:
    body = "".join(f"<tr><td><code>{html.escape(r['text'][:60])}</code></td><td>{r['count']}</td>"
                   f"<td>{r['saving_bits']:+,.1f}</td></tr>" for r in rows)
    return (f"<h2>{html.escape(title)}</h2><table><tr><th>text</th><th>times</th><th>bits saved</th></tr>"
            f"{body}</table>")


def _span(text: bytes, colour: str, tip: str) -> str:
    return (f'<span style="background:{colour}" title="{html.escape(tip)}">'
            f"{html.escape(text.decode('utf-8', 'replace'))}</span>")


def _page(title: str, intro: str, legend: str, spans: list[str], after: str = "") -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}} pre{{white-space:pre-wrap;font-family:monospace;line-height:1.5}}
span{{border-radius:2px}} .legend span{{padding:0 .5em}} td,th{{padding:0 1em;text-align:left}}</style></head><body>
<h1>Prediction = compression</h1>
<p>{intro}</p>
<p class="legend">{legend}</p>
<pre>{''.join(spans)}</pre>
{after}
</body></html>
"""


def render_compare_terminal(comparison: Comparison, console=None, top: int = 5) -> None:
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    text = Text()
    for span in comparison.spans:
        text.append(span.text.decode("utf-8", "replace"), style=f"on {_saving_colour(span.saving)} black")
    console.print(text)
    summary = comparison.to_dict(top)
    for model, bits, bpb in zip(summary["models"], summary["total_bits"], summary["bits_per_byte"]):
        console.print(f"[bold]{model}[/bold]: {bits:,.0f} bits, {bpb:.3f} bits/byte")
    for key, verb in (("top_savings", "saves most on"), ("top_losses", "pays more on")):
        items = ", ".join(f"{r['text'][:30]!r} ({r['count']}x, {r['saving_bits']:+.0f} bits)" for r in summary[key])
        console.print(f"{summary['models'][1]} {verb}: {items or 'nothing'}")
