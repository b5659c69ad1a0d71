"""Pure model functions (whisper, captioners, embedder, summarizer): no Dagster inside."""
