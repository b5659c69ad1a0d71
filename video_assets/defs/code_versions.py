"""Code versions of the model steps, derived from the model settings.

Changing a model (name, revision, prompt) changes its asset's code version, which the Dagster UI
shows as unsynced; "Materialize unsynced" then reruns it. Bump the trailing number when the code
that turns model output into stored data changes.
"""

from video_assets.defs.common import digest
from video_assets.models.embedder import model_id
from video_assets.settings import Settings


def model_code_versions(settings: Settings) -> dict[str, str]:
    summary = f"llm:{settings.summary_model}" if settings.openai_base_url else "extractive"
    return {
        # v2: Whisper base by default, language detected per video and recorded with its probability.
        "transcripts": f"whisper={settings.whisper_model};lang={settings.whisper_language or 'auto'};v2",
        "captions": (
            f"captioner={settings.caption_model}@{settings.caption_revision or 'default'};"
            # v2: OCR detects on frames scaled to 640 px and reads line fragments joined.
            f"prompt={digest(settings.caption_prompt)[:8] if settings.caption_prompt else 'default'};v2"
        ),
        # The model's canonical name: "bundled" meant MiniLM before v2 and means multilingual-e5-small now.
        # v2: the dense vector reads transcript + caption without labels; language in the payload.
        "embeddings": f"embedder={model_id(settings.embedding_model)};keywords=tf-idf;v2",
        "description": f"summary={summary};v1",
    }
