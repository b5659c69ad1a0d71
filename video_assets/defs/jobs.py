import dagster as dg

from video_assets.defs.assets import GROUP
from video_assets.defs.partitions import videos_partitions

# Everything known about one video, in dependency order, in one run per partition.
process_video_job = dg.define_asset_job(
    "process_video",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=videos_partitions,
    description="Materialize all per-video assets for one video partition.",
)
