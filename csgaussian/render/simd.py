"""Scalar building blocks that keep numba loops vectorisable (docs/architecture.md, render).

LLVM turns a numba loop over pixels into SIMD code (8 float32 lanes with AVX2) only when its body
has no branches, no calls and no reductions it may not reorder. numba lowers ``a if c else b``
to branches (which LLVM turns into masked stores, slow on AMD CPUs), has no vectorisable ``exp``
without Intel's SVML, and never reorders a float sum. These helpers give the tile kernels
(:mod:`csgaussian.render.kernels`) the three missing pieces, each as one LLVM instruction or a
short branch-free sequence.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def select(typingctx, cond, if_true, if_false):
    """``if_true if cond else if_false`` as one LLVM ``select``: no branch, so no masked store."""
    sig = if_true(types.boolean, if_true, if_true)

    def codegen(context, builder, signature, args):
        return builder.select(*args)

    return sig, codegen


@intrinsic
def reassoc_add(typingctx, a, b):
    """``a + b`` that LLVM may reassociate, so that a sum over pixels vectorises (the sum is
    then taken in another order: equal up to float rounding). Only the additions written with
    it are reordered; every other operation keeps IEEE semantics."""
    sig = a(a, a)

    def codegen(context, builder, signature, args):
        return builder.fadd(args[0], args[1], flags=("reassoc",))

    return sig, codegen


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 ``bits``."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


# Cephes' expf (S. Moshier): exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2) / 2, with
# ln 2 split in two (C1 exact in float32) so that r is exact; degree-5 minimax polynomial for
# (exp(r) - 1 - r) / r^2. Within 1 ulp of the correctly rounded exp over the range used here.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_POLY = tuple(
    np.float32(c)
    for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1)
)
_EXP_HALF = np.float32(5.0000001201e-1)
EXP_MIN_ARG = np.float32(-87.0)
"""Arguments below are clamped here (the result, ~1.6e-38, stays a normal float32)."""
_FLOAT32_EXP_BIAS = np.int32(127)
_FLOAT32_MANTISSA_BITS = np.int32(23)


@njit(inline="always", error_model="numpy")
def exp(x: np.float32) -> np.float32:
    """float32 ``exp`` for ``x <= 88`` without a library call, so loops around it vectorise."""
    x = max(x, EXP_MIN_ARG)
    n = np.floor(x * _LOG2E + np.float32(0.5))
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    c0, c1, c2, c3, c4 = _EXP_POLY
    p = ((((c0 * r + c1) * r + c2) * r + c3) * r + c4) * r + _EXP_HALF
    y = p * (r * r) + r + np.float32(1.0)
    scale = _float32_from_bits((np.int32(n) + _FLOAT32_EXP_BIAS) << _FLOAT32_MANTISSA_BITS)
    return y * scale
