"""The Celery app a GPU worker serves: `celery -A video_assets.celery_app worker` (see workers.py).

It is the instance's own `CeleryRunLauncher` app (broker, backend and settings from
$DAGSTER_HOME/dagster.yaml, e.g. deploy/dagster-celery.yaml), with dagster-celery's tasks that
execute and resume a whole run registered on it: what the launcher sends, this worker executes.
"""

import dagster as dg
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task


def _launcher_app():  # noqa: ANN202
    with dg.DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        if not isinstance(launcher, CeleryRunLauncher):
            raise RuntimeError(
                f"the instance under DAGSTER_HOME runs with {type(launcher).__name__}, not CeleryRunLauncher: "
                "use deploy/dagster-celery.yaml as its dagster.yaml"
            )
        return launcher.celery


app = _launcher_app()
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
