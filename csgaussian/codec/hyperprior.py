"""Hyperprior weights in the stream, and the coding distributions both sides derive from them.

The weights are int10-coded (``HYPERPRIOR_WEIGHTS``), the hash grid's sign-only tables one flag
per entry; the decoded weights are evaluated in float64 on both sides (docs/method.md §7).
"""

from __future__ import annotations

import copy
import struct

import numpy as np
import torch

from ..entropy.conditional import GroupParams
from ..entropy.hyperprior import AttributeHyperprior
from .container import StreamError
from .flags import decode_flags, encode_flags
from .weights import pack_tensors, unpack_tensors

HYPERPRIOR_WEIGHTS = "int10"
"""Storage of the hyperprior MLP (ours): the coding distributions and the quantization steps come
from the decoded weights on both sides; int10 is the fewest bits that keep the test PSNR
(measured: benchmarks/results/notes/measurements.md#hyperprior-weights)."""


def hyperprior_params(
    hyperprior: AttributeHyperprior,
    state: dict[str, torch.Tensor],
    positions: torch.Tensor,
    context: torch.Tensor | None = None,
) -> dict[str, GroupParams]:
    """Coding distributions per group from decoded weights ``state``, evaluated in float64.

    ``hyperprior`` is a template of the right shapes; a float64 copy receives ``state``, so that
    encoder and decoder hand the coder the same values (docs/method.md §7).
    """
    coder = copy.deepcopy(hyperprior).double()
    coder.load_state_dict({k: v.double() for k, v in state.items()})
    with torch.no_grad():
        return coder.params(positions, None if context is None else context.double())


def pack_hyperprior(hyperprior: AttributeHyperprior) -> bytes:
    """Hyperprior weights: HYPERPRIOR_WEIGHTS tensors, then the sign-only tables as flags."""
    state = hyperprior.state_dict()
    binary = hyperprior.binary_parameters()
    dense = pack_tensors({k: v for k, v in state.items() if k not in binary}, HYPERPRIOR_WEIGHTS)
    flags = encode_flags(np.concatenate([state[k].numpy().ravel() >= 0 for k in binary] or [[]]))
    return struct.pack("<I", len(dense)) + dense + flags


def unpack_hyperprior(blob: bytes, template: AttributeHyperprior) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_hyperprior`; ``template`` gives every tensor's shape."""
    if len(blob) < 4:
        raise StreamError("truncated hyperprior section")
    (n_dense,) = struct.unpack_from("<I", blob)
    if n_dense > len(blob) - 4:
        raise StreamError("truncated hyperprior section")
    shapes = template.state_dict()
    binary = template.binary_parameters()
    dense_shapes = {k: v.shape for k, v in shapes.items() if k not in binary}
    state = unpack_tensors(blob[4 : 4 + n_dense], dense_shapes)
    n_signs = sum(shapes[name].numel() for name in binary)
    signs = decode_flags(blob[4 + n_dense :], (n_signs, 1)).ravel()
    offset = 0
    for name in binary:
        count = shapes[name].numel()
        chunk = torch.from_numpy(signs[offset : offset + count].copy())
        state[name] = torch.where(chunk, 1.0, -1.0).view(shapes[name].shape)
        offset += count
    return state
