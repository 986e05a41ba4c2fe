"""Exports of a decoded scene for standard 3DGS tools: an SH fit, PLY and ``.splat`` writers."""
