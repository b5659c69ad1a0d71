"""video_assets: uploaded videos turned into searchable segments, transcripts, captions and embeddings."""

__version__ = "0.1.0"
