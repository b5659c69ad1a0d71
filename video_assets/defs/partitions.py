import dagster as dg

# One partition per video: `<workspace>--<first 16 hex of the sha256 of its bytes>`.
videos_partitions = dg.DynamicPartitionsDefinition(name="videos")
