"""The deployments against a real Prefect server on loopback (not the ephemeral mode).

The test starts `prefect server start` and `selfplay serve` as the README tells a user to,
then triggers runs through Prefect's API the way the UI's "Run" button does, and reads back
the flow runs' states and artifacts from the server and the rows from the warehouse file.
Deployments run the tiny test model, so each run costs one engine start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

pytestmark = pytest.mark.vllm

BIN = Path(sys.executable).parent
NAME = "selfplay-test"
CRON = "0 0 1 1 *"  # far from any test run: the schedule is shown, never fired
TASKS = 4


@dataclass
class Served:
    api_url: str
    ui_url: str
    warehouse: Path
    config: dict
    serve_log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check, what: str, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} not ready after {timeout_s:.0f} s\n{tail}")


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def served(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    api_url, ui_url = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI asks for the API at 4200 unless told the port it is served from.
        "PREFECT_SERVER_UI_API_URL": api_url,
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    server_log = root / "server.log"
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        stdout=server_log.open("w"),
        stderr=subprocess.STDOUT,
    )
    serve = None
    try:
        _wait(lambda: _healthy(api_url), "prefect server", 120, server_log)
        warehouse = root / "selfplay.duckdb"
        config = {
            "model": {"challenger": str(tiny_model), "solver": str(tiny_model)},
            "sampling": {
                "challenger": {"max_tokens": 48, "temperature": 0.7},
                "solver": {"max_tokens": 48},
            },
            "generate": {"tasks": TASKS, "samples_per_task": 4},
            "evaluation": {
                "reasoning_gym": ["basic_arithmetic"],
                "items_per_task": 4,
                "humaneval_problems": 0,
                "max_tokens": 32,
            },
            "warehouse": {"path": str(warehouse)},
            "run": {"checkpoint_dir": str(root / "runs")},
            "flows": {"generate_schedule": {"cron": CRON}, "retry_delay_s": 1},
        }
        config_path = root / "selfplay.yaml"
        config_path.write_text(yaml.safe_dump(config))
        serve_log = root / "serve.log"
        serve = subprocess.Popen(
            [
                BIN / "selfplay",
                "serve",
                "--config",
                str(config_path),
                "--name",
                NAME,
                "--export-dir",
                str(root / "exports" / "frontier-{now}"),
            ],
            env=env,
            cwd=root,
            stdout=serve_log.open("w"),
            stderr=subprocess.STDOUT,
        )
        _wait(lambda: "being served" in serve_log.read_text(), "selfplay serve", 180, serve_log)
        with temporary_settings({PREFECT_API_URL: api_url}):
            full_config = _deployment(f"generate/{NAME}").parameters["config"]
            yield Served(api_url, ui_url, warehouse, full_config, serve_log)
    finally:
        if serve is not None:
            _stop(serve)
        _stop(server)


def _deployment(name: str):
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def _finished(flow_run_id, log: Path, timeout_s: float = 600) -> FlowRun:
    with get_client(sync_client=True) as client:
        run: list[FlowRun] = []

        def final() -> bool:
            run[:] = [client.read_flow_run(flow_run_id)]
            return run[0].state is not None and run[0].state.is_final()

        _wait(final, f"flow run {flow_run_id}", timeout_s, log)
        return run[0]


def _trigger(name: str, parameters: dict | None = None):
    # timeout=0: create the run and return, as the UI's Run button does; the served
    # process picks it up.
    return run_deployment(name, parameters=parameters, timeout=0).id


def test_deployments_are_registered_with_their_schedules(served: Served) -> None:
    for flow_name in ("generate", "run", "evaluate", "export"):
        deployment = _deployment(f"{flow_name}/{NAME}")
        assert deployment.parameters["config"]["warehouse"]["path"] == str(served.warehouse)
        assert "selfplay" in deployment.tags
    schedules = _deployment(f"generate/{NAME}").schedules
    assert [s.schedule.cron for s in schedules] == [CRON]
    assert schedules[0].active
    assert _deployment(f"run/{NAME}").schedules == []  # no schedule configured


def test_two_triggered_generate_runs_complete_one_after_the_other(served: Served) -> None:
    """Both runs write the same warehouse: the second waits for the first's slot."""
    first, second = _trigger(f"generate/{NAME}"), _trigger(f"generate/{NAME}")
    runs = [_finished(first, served.serve_log), _finished(second, served.serve_log)]
    for run in runs:
        assert run.state is not None and run.state.is_completed(), run.state

    with duckdb.connect(str(served.warehouse), read_only=True) as db:
        spans = db.execute(
            "SELECT r.run_id, r.created_at, max(s.finished_at), count(DISTINCT s.stage), "
            "(SELECT count(*) FROM tasks t WHERE t.run_id = r.run_id) "
            "FROM runs r JOIN stage_runs s USING (run_id) "
            "WHERE r.command LIKE 'selfplay serve%generate' GROUP BY ALL ORDER BY 2"
        ).fetchall()
    assert len(spans) == 2
    assert [(stages, tasks) for _, _, _, stages, tasks in spans] == [(2, TASKS), (2, TASKS)]
    (_, _, first_done, *_), (_, second_started, *_) = spans
    assert second_started >= first_done, "two runs wrote the warehouse at once"

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[first]))
        )
    by_type: dict[str, list] = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    summary = by_type["markdown"][0].data
    assert f"| proposals | {TASKS} |" in summary and "band frontier" in summary
    assert [a.data for a in by_type["progress"]] == [100.0]
    assert any("difficulty_by_iteration.png" in (a.description or "") for a in by_type["image"])
    with duckdb.connect(str(served.warehouse), read_only=True) as db:
        (frontier,) = db.execute(
            "SELECT count(*) FROM difficulty WHERE run_id = ? AND band = 'frontier'",
            [spans[0][0]],
        ).fetchone()
    assert ("table" in by_type) == (frontier > 0)


def test_a_failing_stage_fails_the_run_with_its_cause_and_leaves_the_warehouse_whole(
    served: Served,
) -> None:
    with duckdb.connect(str(served.warehouse), read_only=True) as db:
        before = db.execute("SELECT count(*) FROM tasks").fetchone()
    config = {
        **served.config,
        "evaluation": {**served.config["evaluation"], "reasoning_gym": ["no_such_task"]},
    }
    flow_run_id = _trigger(f"evaluate/{NAME}", {"config": config})
    run = _finished(flow_run_id, served.serve_log)

    assert run.state is not None and run.state.is_failed()
    assert "no_such_task" in (run.state.message or "")
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    evaluate = [t for t in task_runs if t.name.startswith("evaluate")]
    assert len(evaluate) == 1 and evaluate[0].state.is_failed()
    assert evaluate[0].run_count == 1, "bad input must not be retried"
    with duckdb.connect(str(served.warehouse), read_only=True) as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM runs WHERE command LIKE '%evaluate' ORDER BY created_at DESC"
        ).fetchone()
        leftovers = db.execute(
            "SELECT (SELECT count(*) FROM stage_runs WHERE run_id = $r) "
            "+ (SELECT count(*) FROM evaluations WHERE run_id = $r)",
            {"r": run_id},
        ).fetchone()
        after = db.execute("SELECT count(*) FROM tasks").fetchone()
    assert leftovers == (0,)
    assert after == before


# Debian's chromium as the machine's probe started it: no sandbox as root, and no background
# networking, whose connections this closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output"


def _chromium() -> str:
    path = "/usr/bin/chromium"
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/setup-browser.sh installs it")
        pytest.skip("Debian's chromium is not installed (scripts/setup-browser.sh)")
    return path


def test_the_ui_shows_the_deployments_and_the_schedule(served: Served) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.conftest import SAVED_FILES

    SCREENSHOTS.mkdir(exist_ok=True)
    deployment = _deployment(f"generate/{NAME}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{served.ui_url}/deployments")
            rows = page.locator("tr", has_text=NAME)
            expect(rows).to_have_count(4, timeout=60_000)
            for flow_name in ("generate", "run", "evaluate", "export"):
                expect(page.locator("tr", has_text=flow_name).first).to_be_visible()
            list_shot = SCREENSHOTS / "prefect-ui-deployments.png"
            page.screenshot(path=list_shot, full_page=True)

            page.goto(f"{served.ui_url}/deployments/deployment/{deployment.id}")
            # The UI spells the cron out: "0 0 1 1 *" is midnight on the 1st of January.
            expect(
                page.get_by_text("At 12:00 AM on day 1 of the month, only in January")
            ).to_be_visible(timeout=60_000)
            expect(page.get_by_text("Entrypoint")).to_be_visible()
            detail_shot = SCREENSHOTS / "prefect-ui-generate-deployment.png"
            page.screenshot(path=detail_shot, full_page=True)
        finally:
            browser.close()
    for shot in (list_shot, detail_shot):
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
        SAVED_FILES.append(shot)
