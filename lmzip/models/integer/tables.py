"""Tables computed exactly, once, and stored with the weights: exp, the MLP's gates, RoPE.

Python integers and ``decimal`` only, never libm, whose last bits differ between libraries and
devices: every machine computes the very same tables.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np

from .arithmetic import EXP_ONE, EXP_STEPS_PER_NAT

SIGMOID_STEPS = 256  # table entries per unit of the gate
SIGMOID_RANGE = 16  # gates beyond +-16 use the table's ends (sigmoid within 1.2e-7 of 0 or 1)


def exp_table(one: int = EXP_ONE) -> np.ndarray:
    """round(one * exp(-i / 128)) down to the first zero, by ``decimal`` (correctly rounded, never
    libm): every machine computes the same integers. Stored with the weights."""
    out = []
    with localcontext() as ctx:
        ctx.prec = 40
        while not out or out[-1]:
            out.append(int((one * (Decimal(-len(out)) / EXP_STEPS_PER_NAT).exp()).to_integral_value()))
    return np.array(out, dtype=np.int64)


def sigmoid_table() -> np.ndarray:
    """sigmoid(i / 256) for i in [-4096, 4096], float32, from ``decimal``."""
    return _gate_table(lambda x: x)


def gelu_gate_table() -> np.ndarray:
    """The GELU (tanh) gate at i / 256: gelu(x) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), indexed
    as sigmoid_table is."""
    root = (2 / Decimal(_PI)).sqrt()
    return _gate_table(lambda x: 2 * root * (x + Decimal("0.044715") * x ** 3))


_PI = "3.14159265358979323846264338327950288419716939937510"


def _gate_table(argument) -> np.ndarray:
    """sigmoid(argument(i / 256)) for i in [-4096, 4096], float32: ``decimal`` at 40 digits, then
    float64 and float32 (both roundings IEEE's)."""
    n = SIGMOID_RANGE * SIGMOID_STEPS
    with localcontext() as ctx:
        ctx.prec = 40
        values = [float(1 / (1 + (-argument(Decimal(i) / SIGMOID_STEPS)).exp())) for i in range(-n, n + 1)]
    return np.array(values, dtype=np.float32)


def _cos_sin(angle: Decimal, one: int) -> tuple[int, int]:
    """cos and sin of a small angle as integers scaled by ``one`` (Taylor series in decimal)."""
    cos, sin, term, k = Decimal(0), Decimal(0), Decimal(1), 0
    while abs(term) > Decimal(10) ** -45:
        if k % 2 == 0:
            cos += term if k % 4 == 0 else -term
        else:
            sin += term if k % 4 == 1 else -term
        k += 1
        term = term * angle / k
    return int((cos * one).to_integral_value()), int((sin * one).to_integral_value())


def rope_tables(theta: float, head_dim: int, length: int,
                factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (length, head_dim) float32 in rotate-half layout, position p, frequency
    theta^(-2i/d) (divided by ``factors[i]`` where a GGUF gives them: Llama 3.1's long-context
    scaling): exact integer rotations by each frequency's unit step."""
    bits = 100
    one = 1 << bits
    half = head_dim // 2
    cos, sin = np.empty((length, half)), np.empty((length, half))
    with localcontext() as ctx:
        ctx.prec = 50
        log_theta = Decimal(repr(theta)).ln()
        for i in range(half):
            angle = (-log_theta * 2 * i / head_dim).exp()
            if factors is not None:
                angle /= Decimal(repr(float(factors[i])))
            c, s = _cos_sin(angle, one)
            x, y = one, 0
            for p in range(length):
                cos[p, i], sin[p, i] = x / one, y / one  # int / int: correctly rounded
                x, y = (x * c - y * s) >> bits, (x * s + y * c) >> bits
    cos, sin = cos.astype(np.float32), sin.astype(np.float32)
    return np.concatenate([cos, cos], axis=1), np.concatenate([sin, sin], axis=1)
