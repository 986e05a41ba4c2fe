"""Tiny randomly initialised SAM and CLIP models of the real transformers classes, saved as the
model folders ``prepare --sam --clip`` reads (no weights exist in CI)."""

from pathlib import Path

import torch

WORDS = ["[PAD]", "[UNK]", "a", "cup", "plate", "object", "things", "stuff", "texture", "red"]


def write_tiny_sam(folder: Path) -> Path:
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(0)
    vision = SamVisionConfig(
        hidden_size=16,
        output_channels=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        image_size=32,
        patch_size=8,
        mlp_dim=16,
        global_attn_indexes=[0],
        window_size=2,
        num_pos_feats=8,
    )
    prompt = SamPromptEncoderConfig(hidden_size=16, image_size=32, patch_size=8)
    decoder = SamMaskDecoderConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=1, mlp_dim=16
    )
    config = SamConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder
    )
    SamModel(config).save_pretrained(folder)
    return folder


def write_tiny_clip(folder: Path) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(1)
    text = dict(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        vocab_size=len(WORDS),
        max_position_embeddings=8,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=2,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        image_size=16,
        patch_size=8,
    )
    CLIPModel(
        CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)
    ).save_pretrained(folder)
    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder
