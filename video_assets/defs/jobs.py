from typing import TYPE_CHECKING

import dagster as dg

from video_assets.defs.common import GROUP
from video_assets.settings import Settings

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

PROCESS_VIDEO = "process_video"


def build_process_video_job(settings: Settings) -> "UnresolvedAssetJobDefinition":
    """Everything known about one video, in dependency order, in one run per partition.

    The time limit is a job tag, so runs from the sensor, the UI, backfills and the CLI all carry it;
    run monitoring (dagster.yaml) fails a run that passes it.
    """
    return dg.define_asset_job(
        PROCESS_VIDEO,
        selection=dg.AssetSelection.groups(GROUP),
        description="Materialize all per-video assets for one video partition.",
        tags={"dagster/max_runtime": str(int(settings.run_max_runtime))},
    )
