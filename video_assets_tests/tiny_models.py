"""Tiny randomly initialised vision-language models, built offline from configs, standing in for
CUDA-only production models (MiniCPM-V) in tests: loaded through the very same from_pretrained code.
The LLaVA builder lives in the package (`video_assets.models.tiny_vlm`) so the GPU smoke script can use it."""

from __future__ import annotations

from pathlib import Path

from video_assets.models.tiny_vlm import CHAT_TEMPLATE, minilm_tokenizer, save_tiny_llava

__all__ = ["CHAT_TEMPLATE", "minilm_tokenizer", "save_tiny_blip", "save_tiny_llava"]


def save_tiny_blip(folder: Path) -> None:
    """A BLIP captioner (ViT + BERT-style decoder) whose processor has no chat template."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    tokenizer = minilm_tokenizer()
    processor = BlipProcessor(
        image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = BlipConfig(
        vision_config={**small, "image_size": 32, "patch_size": 8},
        text_config={
            **small,
            "vocab_size": len(tokenizer),
            "encoder_hidden_size": 32,
            "max_position_embeddings": 512,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "eos_token_id": tokenizer.sep_token_id,
        },
        projection_dim=32,
    )
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
