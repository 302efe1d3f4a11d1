"""The real ``iscli`` console script against a running system.

Every command runs as a subprocess, the way users type it; the system is
the integration suite's (real nats-server, gateway, planner and worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PASSWORD, System

pytestmark = pytest.mark.integration

ISCLI = str(Path(sys.executable).parent / "iscli")

STEP = """
from ipaascore.BaseStep import BaseStep


class {name}(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="who", default_value="world")

    def execute(self):
        self.logger.info("greeting %s" % self.get_parameter("who"))
        self.save_data_for_next_step({{"greeting": "hello " + self.get_parameter("who")}})
"""

NAP = """
import time

from ipaascore.BaseStep import BaseStep


class {name}(BaseStep):
    def __init__(self):
        self.new_step_parameter(name="seconds", default_value=1)

    def execute(self):
        time.sleep(float(self.get_parameter("seconds")))
"""

FAIL = """
from ipaascore.BaseStep import BaseStep


class {name}(BaseStep):
    def __init__(self):
        pass

    def execute(self):
        raise ValueError("the device answered 500")
"""


@pytest.fixture(scope="module")
def steps(module_system: System) -> System:
    """The module's system with the steps CliHi, CliNap and CliFail uploaded once."""
    module_system.upload_step("CliHi", STEP.format(name="CliHi"))
    module_system.upload_step("CliNap", NAP.format(name="CliNap"))
    module_system.upload_step("CliFail", FAIL.format(name="CliFail"))
    return module_system


def cli(
    system: System, *args: str, cwd: Path, env: dict[str, str] | None = None, flags: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run iscli; the connection comes from ISCLI_* unless ``flags`` (then args)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IS_", "ISCLI_"))}
    base.update(XDG_CONFIG_HOME=str(cwd / "config-home"), IS_DATA_DIR=str(cwd / "no-data"))
    if not flags:
        base.update(
            ISCLI_HOST="127.0.0.1", ISCLI_PORT=str(system.http_port), ISCLI_PASSWORD=PASSWORD
        )
    base.update(env or {})
    return subprocess.run(
        [ISCLI, *args], cwd=cwd, env=base, capture_output=True, text=True, timeout=50, check=False
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def write_json(path: Path, document: Any) -> Path:
    return write(path, json.dumps(document, indent=2))


def application(name: str, *steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "steps": list(steps), **extra}


def status(system: System, path: str) -> int:
    with system.client() as http:
        return http.get(path).status_code


def test_help_lists_the_manual_flags(module_system: System, tmp_path: Path) -> None:
    result = cli(module_system, "-h", cwd=tmp_path)

    assert result.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--username",
        "--password",
        "--upload",
        "--fileLocation",
        "--configuration",
        "--application",
        "--step",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize("form", ["separate", "grouped"])
def test_manual_upload_forms_store_step_application_and_configuration(
    module_system: System, tmp_path: Path, form: str
) -> None:
    step = write(tmp_path / f"Manual{form}.py", STEP.format(name=f"Manual{form}"))
    app = write_json(
        tmp_path / "app.json",
        application(f"manual_{form}_app", {"name": "Greet", "file": f"Manual{form}"}),
    )
    config = write_json(
        tmp_path / "config.json",
        {"name": f"manual_{form}_config", "configuration_data": [{"name": "a", "value": 1}]},
    )
    connection = [
        "-H",
        "127.0.0.1",
        "-P",
        str(module_system.http_port),
        "-U",
        "isadmin",
        "-p",
        PASSWORD,
    ]
    if form == "separate":
        commands = [
            ["-u", "-s", "-f", str(step), *connection],
            ["-u", "-a", "-f", str(app), *connection],
            ["-u", "-c", "-f", str(config), *connection],
        ]
    else:
        commands = [
            [*connection, "-usf", str(step)],
            [*connection, "-uaf", str(app)],
            [*connection, "-ucf", str(config)],
        ]

    results = [cli(module_system, *argv, cwd=tmp_path, flags=True) for argv in commands]

    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert f"Uploaded step 'Manual{form}'" in results[0].stdout
    assert status(module_system, f"/steps/Manual{form}") == 200
    assert status(module_system, f"/applications/manual_{form}_app") == 200
    assert status(module_system, f"/configurations/manual_{form}_config") == 200


def test_directory_upload_sends_every_step_and_json_file(
    module_system: System, tmp_path: Path
) -> None:
    folder = tmp_path / "content"
    write(folder / "DirOne.py", STEP.format(name="DirOne"))
    write(folder / "DirTwo.py", STEP.format(name="DirTwo"))
    write_json(
        folder / "dir_app.json",
        application(
            "dir_app",
            {"name": "One", "file": "DirOne", "output_to": ["Two"]},
            {"name": "Two", "file": "DirTwo"},
        ),
    )
    write_json(folder / "dir_config.json", {"name": "dir_config", "configuration_data": []})
    write(folder / "README.txt", "not a definition")

    result = cli(module_system, "-u", "-f", str(folder), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Uploaded") == 4
    for path in (
        "/steps/DirOne",
        "/steps/DirTwo",
        "/applications/dir_app",
        "/configurations/dir_config",
    ):
        assert status(module_system, path) == 200


def test_invalid_json_is_reported_with_line_and_column_before_anything_is_sent(
    module_system: System, tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    write(folder / "NeverSent.py", STEP.format(name="NeverSent"))
    write(folder / "broken_app.json", '{\n  "name": "broken_app",\n  "steps": [True]\n}\n')

    result = cli(module_system, "-u", "-f", str(folder), cwd=tmp_path)

    assert result.returncode == 3
    assert "broken_app.json' is not valid JSON: Expecting value at line 3 column 13" in (
        result.stderr
    )
    assert "hint: Python literals such as True" in result.stderr
    assert status(module_system, "/steps/NeverSent") == 404


def test_invalid_json_file_sends_nothing(module_system: System, tmp_path: Path) -> None:
    broken = write(tmp_path / "lonely.json", "{'name': 'lonely_app'}")

    result = cli(module_system, "-uaf", str(broken), cwd=tmp_path)

    assert result.returncode == 3
    assert "at line 1 column 2" in result.stderr
    assert status(module_system, "/applications/lonely_app") == 404


def test_run_wait_prints_each_step_state_and_succeeds(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    module_system.upload_application(
        application(
            "progress_app",
            {"name": "Nap", "file": "CliNap", "seconds": 1.5, "output_to": ["Hi"]},
            {"name": "Hi", "file": "CliHi"},
        )
    )

    result = cli(module_system, "run", "progress_app", "--wait", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.endswith("step 'Nap' running") for line in lines)
    assert any(line.endswith("step 'Nap' succeeded") for line in lines)
    assert any(line.endswith("step 'Hi' succeeded") for line in lines)
    assert lines[-1].endswith("SUCCESS")


def test_run_wait_exits_non_zero_when_a_step_fails(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    module_system.upload_application(
        application("failing_app", {"name": "Call device", "file": "CliFail"})
    )

    result = cli(module_system, "run", "failing_app", "--wait", cwd=tmp_path)

    assert result.returncode == 8
    assert "step 'Call device' failed" in result.stdout
    assert "the device answered 500" in result.stdout
    assert "ended FAILURE" in result.stderr
    assert "hint: See the steps' logs with: iscli tasks isapp-" in result.stderr


def test_run_json_output_carries_params_configuration_and_queue(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    module_system.upload_application(
        application(
            "params_app",
            {"name": "Hi", "file": "CliHi", "who": "${appvar.who}"},
            app_variables=[{"name": "who", "value": "nobody"}],
        )
    )
    with module_system.client() as http:
        http.post("/configurations", json={"name": "params_config", "configuration_data": []})

    result = cli(
        module_system,
        "--json",
        "run",
        "params_app",
        "--param",
        "who=ada",
        "--param",
        "limit=3",
        "--configuration",
        "params_config",
        "--queue",
        "default",
        "--wait",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["state"] == "SUCCESS"
    assert run["params"] == {
        "who": "ada",
        "limit": 3,
        "queue": "default",
        "configuration": "params_config",
    }
    assert run["configuration"] == "params_config"
    step = module_system.get(f"/tasks/{run['steps'][0]['id']}")
    assert step["result"]["data"] == {"greeting": "hello ada"}
    assert "step 'Hi' succeeded" in result.stderr


def test_json_output_of_list_and_get_parses(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    listed = cli(module_system, "list", "steps", "--json", cwd=tmp_path)
    got = cli(module_system, "get", "step", "CliHi", "--json", cwd=tmp_path)
    source = cli(module_system, "get", "step", "CliHi", cwd=tmp_path)

    assert "CliHi" in [s["name"] for s in json.loads(listed.stdout)]
    assert json.loads(got.stdout)["name"] == "CliHi"
    assert source.stdout == textwrap.dedent(STEP.format(name="CliHi"))


def test_logs_and_tasks_show_the_latest_run_with_step_logs(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    module_system.upload_application(
        application("logs_app", {"name": "Hi", "file": "CliHi", "who": "grace"})
    )
    run = module_system.run("logs_app", wait=20)

    logs = cli(module_system, "logs", "logs_app", cwd=tmp_path)
    task = cli(module_system, "--json", "tasks", run["id"], cwd=tmp_path)

    assert logs.returncode == 0, logs.stderr
    assert f"Run {run['id']} of application 'logs_app': SUCCESS" in logs.stdout
    assert "greeting grace" in logs.stdout
    assert json.loads(task.stdout)["steps"][0]["state"] == "SUCCESS"


def test_missing_definition_exits_4_with_the_servers_reason(
    module_system: System, tmp_path: Path
) -> None:
    result = cli(module_system, "get", "application", "no_such_app", cwd=tmp_path)

    assert result.returncode == 4
    assert "Application 'no_such_app' is not defined" in result.stderr
    assert "(HTTP 404 application_not_found)." in result.stderr
    assert "hint: See which exist with: iscli list applications" in result.stderr


def test_wrong_password_exits_5_with_a_hint(module_system: System, tmp_path: Path) -> None:
    result = cli(module_system, "-p", "wrong", "list", "steps", cwd=tmp_path)

    assert result.returncode == 5
    assert "HTTP 401" in result.stderr
    assert "hint: Check the password" in result.stderr


def test_unreachable_gateway_exits_6_with_a_hint(module_system: System, tmp_path: Path) -> None:
    result = cli(module_system, "list", "steps", cwd=tmp_path, env={"ISCLI_PORT": "9"})

    assert result.returncode == 6
    assert "cannot be reached" in result.stderr
    assert "make up" in result.stderr


def test_make_up_system_needs_no_flags(module_system: System, tmp_path: Path) -> None:
    data = tmp_path / ".isdata"
    write(data / "admin-password", PASSWORD + "\n")
    env = {"IS_HTTP_PORT": str(module_system.http_port), "IS_DATA_DIR": str(data)}

    result = cli(module_system, "--json", "list", "apps", cwd=tmp_path, env=env, flags=True)

    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


def test_delete_removes_each_kind_of_definition(module_system: System, tmp_path: Path) -> None:
    module_system.upload_step("DoomedStep", STEP.format(name="DoomedStep"))
    module_system.upload_application(application("doomed_app", {"name": "S", "file": "DoomedStep"}))
    schedule = write_json(
        tmp_path / "doomed_schedule.json",
        {
            "application_id": "doomed_app",
            "entry_id": "doomed_schedule",
            "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 3600}},
        },
    )
    uploaded = cli(module_system, "upload", str(schedule), cwd=tmp_path)
    listed = cli(module_system, "list", "schedules", cwd=tmp_path)

    results = [
        cli(module_system, "delete", kind, name, cwd=tmp_path)
        for kind, name in (
            ("schedule", "doomed_schedule"),
            ("app", "doomed_app"),
            ("step", "DoomedStep"),
        )
    ]

    assert uploaded.returncode == 0, uploaded.stderr
    assert "doomed_schedule" in listed.stdout
    assert "every 3600 s" in listed.stdout
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert results[1].stdout == "Deleted application 'doomed_app'.\n"
    assert status(module_system, "/schedule/doomed_schedule") == 404
    assert status(module_system, "/applications/doomed_app") == 404


async def test_revoke_stops_a_running_run(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    module_system.upload_application(
        application("revoke_app", {"name": "Nap", "file": "CliNap", "seconds": 40})
    )
    run = module_system.run("revoke_app")
    await module_system.wait_for(run["id"], step_state="STARTED")

    result = cli(module_system, "revoke", run["id"], cwd=tmp_path)
    final = await module_system.wait_for(run["id"])

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Revoked {run['id']}")
    assert final["state"] == "REVOKED"


def test_replay_with_wait_runs_the_run_again(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    module_system.upload_application(application("replay_app", {"name": "Hi", "file": "CliHi"}))
    first = module_system.run("replay_app", params={"who": "again"}, wait=20)

    result = cli(module_system, "--json", "replay", first["id"], "--wait", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    replayed = json.loads(result.stdout)
    assert replayed["id"] != first["id"]
    assert (replayed["state"], replayed["replay_of"]) == ("SUCCESS", first["id"])


def snapshot(system: System, names: dict[str, str]) -> dict[str, Any]:
    """The definitions ``names`` (kind to name) on ``system``, minus bookkeeping."""
    documents = {kind: system.get(f"/{kind}/{name}") for kind, name in names.items()}
    return {
        kind: {
            k: v
            for k, v in doc.items()
            if not k.startswith("_") and k not in ("created_at", "version")
        }
        for kind, doc in documents.items()
    }


def test_export_then_import_on_an_empty_system_reproduces_the_definitions(
    module_system: System, system_factory: Any, tmp_path: Path
) -> None:
    module_system.upload_step("PackHi", STEP.format(name="PackHi"))
    module_system.upload_application(
        application("pack_app", {"name": "Hi", "file": "PackHi"}, configuration="pack_config")
    )
    with module_system.client() as http:
        http.post(
            "/configurations",
            json={
                "name": "pack_config",
                "configuration_data": [{"name": "password", "value": "s3cret", "encrypted": True}],
            },
        ).raise_for_status()
    # Encrypted values travel as ciphertext, so both systems share one key file.
    target = system_factory()
    target.extra_env["IS_ENCRYPTION_KEY_FILE"] = str(module_system.data_dir / "encryption_key")
    target.start_all()
    names = {"steps": "PackHi", "applications": "pack_app", "configurations": "pack_config"}

    exported = cli(
        module_system,
        "export",
        str(tmp_path / "pack.tar.gz"),
        "--application",
        "pack_app",
        cwd=tmp_path,
    )
    imported = cli(target, "import", str(tmp_path / "pack.tar.gz"), cwd=tmp_path)
    again = cli(target, "import", str(tmp_path / "pack.tar.gz"), "--dry-run", cwd=tmp_path)

    assert exported.returncode == 0, exported.stderr
    assert "Exported 1 steps, 1 applications, 1 configurations" in exported.stdout
    assert imported.returncode == 0, imported.stderr
    assert "add        step           PackHi" in imported.stdout
    assert snapshot(target, names) == snapshot(module_system, names)
    assert ": 0 to apply, 3 unchanged." in again.stdout
    assert b"s3cret" not in (tmp_path / "pack.tar.gz").read_bytes()


def test_exported_schedule_imports_again(
    module_system: System, steps: System, tmp_path: Path
) -> None:
    module_system.upload_application(application("again_app", {"name": "Hi", "file": "CliHi"}))
    with module_system.client() as http:
        http.post(
            "/schedule",
            json={
                "application_id": "again_app",
                "entry_id": "again_daily",
                "schedule": {"schedule_type": "crontab", "schedule_info": {"minute": "5"}},
            },
        ).raise_for_status()
    exported = cli(
        module_system, "export", str(tmp_path / "pack"), "--application", "again_app", cwd=tmp_path
    )
    cli(module_system, "delete", "schedule", "again_daily", cwd=tmp_path)

    imported = cli(module_system, "import", str(tmp_path / "pack"), cwd=tmp_path)

    assert exported.returncode == 0, exported.stderr
    assert imported.returncode == 0, imported.stderr
    assert module_system.get("/schedule/again_daily")["schedule"]["schedule_info"]["minute"] == "5"


def make_syncpack(root: Path) -> Path:
    pack = root / "sync_demo"
    write(pack / "__init__.py", "")
    write(pack / "steps" / "__init__.py", "")
    write(pack / "steps" / "SyncHi.py", STEP.format(name="SyncHi"))
    write_json(
        pack / "apps" / "sync_app.json",
        application("sync_app", {"name": "Hi", "file": "SyncHi"}, configuration="sync_config"),
    )
    write_json(
        pack / "configs" / "sync_config.json",
        {"name": "sync_config", "configuration_data": [{"name": "region", "value": "emea"}]},
    )
    write_json(
        pack / "meta.json",
        {
            "name": "sync_demo",
            "version": "1.2.0",
            "schedules": [
                {
                    "application_id": "sync_app",
                    "entry_id": "sync_hourly",
                    "params": {},
                    "schedule": {
                        "schedule_type": "frequency",
                        "schedule_info": {"run_every": 3600},
                    },
                }
            ],
        },
    )
    write(root / "setup.py", "from setuptools import setup\nsetup()\n")
    return root


def test_syncpack_layout_directory_imports_as_is(module_system: System, tmp_path: Path) -> None:
    project = make_syncpack(tmp_path / "project")

    result = cli(module_system, "import", str(project), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Pack 'sync_demo' version 1.2.0: 4 to apply, 0 unchanged." in result.stdout
    assert (
        module_system.get("/configurations/sync_config")["configuration_data"][0]["value"] == "emea"
    )
    assert module_system.get("/applications/sync_app")["configuration"] == "sync_config"
    assert module_system.get("/schedule/sync_hourly")["application_id"] == "sync_app"
    assert "SyncHi" in module_system.get("/steps/SyncHi")["data"]


def test_import_shows_a_changed_step_and_then_applies_it(
    module_system: System, tmp_path: Path
) -> None:
    write(tmp_path / "pack" / "steps" / "ChangingHi.py", STEP.format(name="ChangingHi"))
    first = cli(module_system, "import", str(tmp_path / "pack"), cwd=tmp_path)
    write(
        tmp_path / "pack" / "steps" / "ChangingHi.py",
        STEP.format(name="ChangingHi") + "\n# second edition\n",
    )

    preview = cli(module_system, "import", str(tmp_path / "pack"), "--dry-run", cwd=tmp_path)
    applied = cli(module_system, "--json", "import", str(tmp_path / "pack"), cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "change     step           ChangingHi (version 1 replaced)" in preview.stdout
    assert module_system.get("/steps/ChangingHi")["version"] == 2
    assert json.loads(applied.stdout)["changes"] == [
        {"action": "change", "kind": "step", "name": "ChangingHi", "detail": "version 1 replaced"}
    ]


def test_gateway_error_answer_is_one_line_with_the_servers_code(
    module_system: System, tmp_path: Path
) -> None:
    app = write_json(
        tmp_path / "cyclic.json",
        application(
            "cyclic_app",
            {"name": "A", "file": "X", "output_to": ["B"]},
            {"name": "B", "file": "X", "output_to": ["A"]},
        ),
    )

    result = cli(module_system, "-uaf", str(app), cwd=tmp_path)

    assert result.returncode == 7
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("iscli: error: ")
    assert "(HTTP 400 " in first_line


def test_api_token_authenticates_instead_of_a_password(
    module_system: System, tmp_path: Path
) -> None:
    with module_system.client() as http:
        token = http.post("/tokens", json={"label": "iscli test"}).json()["token"]

    result = cli(
        module_system,
        "--json",
        "list",
        "steps",
        cwd=tmp_path,
        env={"ISCLI_PASSWORD": "", "ISCLI_TOKEN": token},
    )

    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
