import dagster as dg

from video_assets.defs.common import GROUP

# Everything known about one video, in dependency order, in one run per partition.
process_video_job = dg.define_asset_job(
    "process_video",
    selection=dg.AssetSelection.groups(GROUP),
    description="Materialize all per-video assets for one video partition.",
)
