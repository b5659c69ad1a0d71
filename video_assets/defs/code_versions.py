"""Code versions of the model steps, derived from the model settings.

Changing a model (name, revision, prompt) changes its asset's code version, which the Dagster UI
shows as unsynced; "Materialize unsynced" then reruns it. Bump the trailing number when the code
that turns model output into stored data changes.
"""

from video_assets.defs.common import digest
from video_assets.settings import Settings


def model_code_versions(settings: Settings) -> dict[str, str]:
    summary = f"llm:{settings.summary_model}" if settings.openai_base_url else "extractive"
    return {
        "transcripts": f"whisper={settings.whisper_model};lang={settings.whisper_language or 'auto'};v1",
        "captions": (
            f"captioner={settings.caption_model}@{settings.caption_revision or 'default'};"
            f"prompt={digest(settings.caption_prompt)[:8] if settings.caption_prompt else 'default'};v1"
        ),
        "embeddings": f"embedder={settings.embedding_model};keywords=tf-idf;v1",
        "description": f"summary={summary};v1",
    }
