"""`selfplay serve`: the generate, run, evaluate and export flows as Prefect deployments.

Built on `prefect.serve`: this process registers the four deployments (parameters from the
config, schedules from its `flows.*_schedule` fields) with the Prefect server at
PREFECT_API_URL, then polls it and runs what is due, scheduled or triggered from the UI or
`prefect deployment run`, each flow run in a subprocess of its own. Runs that share a
warehouse file take turns through its concurrency limit (`flows.warehouse_slot`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import Flow
from prefect.deployments.runner import RunnerDeployment
from prefect.settings import get_current_settings

from flows.evaluate import evaluate_flow
from flows.export import export_flow
from flows.generate import generate_flow
from flows.run import run_flow
from flows.warehouse_slot import ensure_limit
from selfplay.config import Config, ConfigError, ScheduleConfig

TAGS = ["selfplay"]


def schedule_options(schedule: ScheduleConfig) -> dict[str, Any]:
    if schedule.cron is not None:
        return {"cron": schedule.cron}
    if schedule.interval_minutes is not None:
        return {"interval": timedelta(minutes=schedule.interval_minutes)}
    return {}  # no schedule: runs start from the UI or `prefect deployment run`


def build_deployments(config: Config, name: str, export_dir: str) -> list[RunnerDeployment]:
    """The four deployments, `<flow>/<name>`, each with the whole config as its parameter."""
    settings = config.model_dump(mode="json")
    schedules = config.flows
    plans: list[tuple[Flow, str, ScheduleConfig, dict[str, Any]]] = [
        (
            generate_flow,
            "One data-generation iteration: propose, solve, label, store.",
            schedules.generate_schedule,
            {"command": f"selfplay serve ({name}): generate"},
        ),
        (
            run_flow,
            "Self-play iterations training both roles, with held-out evaluation.",
            schedules.run_schedule,
            {"command": f"selfplay serve ({name}): run"},
        ),
        (
            evaluate_flow,
            "Held-out evaluation of the configured Solver (or `model`).",
            schedules.evaluate_schedule,
            {"command": f"selfplay serve ({name}): evaluate"},
        ),
        (
            export_flow,
            "Export the frontier curriculum as a Hugging Face dataset.",
            schedules.export_schedule,
            {"output_dir": export_dir},
        ),
    ]
    deployments = []
    for flow, description, schedule, parameters in plans:
        deployment = flow.to_deployment(
            name,
            parameters={"config": settings, **parameters},
            description=description,
            tags=TAGS,
            **schedule_options(schedule),
        )
        assert isinstance(deployment, RunnerDeployment)  # called from sync code: not awaitable
        deployments.append(deployment)
    return deployments


def api_url() -> str:
    """The Prefect server deployments register with; serving without one is an error."""
    url = get_current_settings().api.url
    if not url:
        raise ConfigError(
            "selfplay serve needs a Prefect server: start one with "
            "`prefect server start --host 127.0.0.1`, then "
            "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`"
        )
    return url


def serve(config: Config, name: str, export_dir: str) -> None:
    from prefect import serve as prefect_serve

    api_url()
    ensure_limit(config.warehouse.path)
    prefect_serve(*build_deployments(config, name, export_dir))
