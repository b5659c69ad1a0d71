"""On-disk layout, atomic writes, the source registry and the vector index."""
