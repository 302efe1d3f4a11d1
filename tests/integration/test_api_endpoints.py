"""Success paths and documented errors of the REST API's own endpoints."""

from __future__ import annotations

import uuid

import httpx

from tests.integration.conftest import System

REPORTING_STEP = """
from ipaascore.BaseStep import BaseStep


class {name}(BaseStep):
    def __init__(self):
        self.friendly_name = "Report devices"
        self.description = "Adds report rows and a cache entry."
        self.version = "2.1"
        self.new_step_parameter(name="host", description="SL1 host", required=True)

    def execute(self):
        host = self.get_parameter("host")
        self.logger.info("reporting on %s", host)
        self.add_report_row({{"Device Name": host, "Status": "New"}})
        self.cache_write("{cache_id}", {{"host": host}}, ttl_s=600)
        self.save_data_for_next_step({{"seen": self.cache_read("{cache_id}")}})
"""

READER_STEP = """
from ipaascore.BaseStep import BaseStep


class {name}(BaseStep):
    def execute(self):
        self.save_data_for_next_step(self.cache_read("{cache_id}", default="absent"))
"""


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def test_step_run_answers_200_with_logs_output_and_metadata_is_read(
    module_system: System,
) -> None:
    name, cache_id = _unique("Reporter"), _unique("devices.")
    uploaded = module_system.upload_step(name, REPORTING_STEP.format(name=name,
                                                                     cache_id=cache_id))
    with module_system.client() as http:
        ran = http.post("/steps/run", params={"wait": 20}, json={"name": name, "host": "rtr1"})
        step = http.get(f"/steps/{name}").json()

    assert uploaded["friendly_name"] == "Report devices"
    assert step["step_version"] == "2.1"
    assert step["parameters"][0]["name"] == "host"
    assert "class " in step["data"]
    assert ran.status_code == 200, ran.text
    assert ran.json()["state"] == "SUCCESS"
    assert ran.json()["output"] == {"seen": {"host": "rtr1"}}
    assert any("reporting on rtr1" in line["message"] for line in ran.json()["logs"])


def test_step_run_refuses_missing_parameter_and_unknown_step(module_system: System) -> None:
    name = _unique("Reporter")
    module_system.upload_step(name, REPORTING_STEP.format(name=name, cache_id="x"))
    with module_system.client() as http:
        missing = http.post("/steps/run", json={"name": name})
        unknown = http.post("/steps/run", json={"name": _unique("Nothing")})

    assert (missing.status_code, missing.json()["code"]) == (400, "missing_parameter")
    assert missing.json()["field"] == "host"
    assert (unknown.status_code, unknown.json()["code"]) == (404, "step_not_found")


def test_step_run_answers_202_with_a_task_id_when_wait_is_zero(module_system: System) -> None:
    name = _unique("Reporter")
    module_system.upload_step(name, REPORTING_STEP.format(name=name, cache_id=_unique("c")))
    with module_system.client() as http:
        ran = http.post("/steps/run", params={"wait": 0}, json={"name": name, "host": "h"})
        listed = http.get("/applications", params={"limit": 1000}).json()

    assert ran.status_code == 202
    assert ran.json()["id"]
    assert not any(a["name"].startswith("steprun.") for a in listed)


async def test_report_and_cache_written_by_steps_are_served(module_system: System) -> None:
    name, reader, cache_id = _unique("Reporter"), _unique("Reader"), _unique("devices.")
    module_system.upload_step(name, REPORTING_STEP.format(name=name, cache_id=cache_id))
    module_system.upload_step(reader, READER_STEP.format(name=reader, cache_id=cache_id))
    application = _unique("reporting_app_")
    module_system.upload_application({
        "name": application,
        "generate_report": True,
        "steps": [
            {"name": "report", "file": name, "host": "sw9", "output_to": ["read"]},
            {"name": "read", "file": reader},
        ],
    })

    run = module_system.run(application)
    done = await module_system.wait_for(run["id"])
    report_id = f"report-{application}-{run['id']}"
    with module_system.client() as http:
        listed = http.get("/reports", params={"application": application}).json()
        report = http.get(f"/reports/{report_id}").json()
        cached = http.get(f"/cache/{cache_id}").json()
        read_task = http.get(f"/tasks/{done['steps'][1]['id']}").json()
        removed_cache = http.delete(f"/cache/{cache_id}")
        missing_cache = http.get(f"/cache/{cache_id}")
        removed = http.delete("/reports", params={"application": application}).json()
        missing_report = http.get(f"/reports/{report_id}")

    assert done["state"] == "SUCCESS"
    assert [r["id"] for r in listed] == [report_id]
    assert report["rows"] == [{"Device Name": "sw9", "Status": "New"}]
    assert cached["value"] == {"host": "sw9"}
    assert cached["expires_at"] is not None
    assert read_task["result"]["data"] == {"host": "sw9"}
    assert removed_cache.status_code == 200
    assert (missing_cache.status_code, missing_cache.json()["code"]) == (404, "cache_not_found")
    assert removed == {"application": application, "deleted_count": 1}
    assert (missing_report.status_code, missing_report.json()["code"]) == (
        404, "report_not_found")


def test_application_upload_with_a_stale_version_is_refused_with_409(
    module_system: System,
) -> None:
    name = _unique("versioned_")
    step = _unique("Reporter")
    module_system.upload_step(step, REPORTING_STEP.format(name=step, cache_id="x"))
    document = {"name": name, "steps": [{"name": "a", "file": step, "host": "h"}]}
    first = module_system.upload_application(document)
    with module_system.client() as http:
        ui_edit = http.post("/applications", json={**first, "description": "by the UI"})
        cli_edit = http.post("/applications", json={**first, "description": "by the CLI"})
        query = http.post("/applications", params={"expected_version": 1}, json=document)

    assert ui_edit.status_code == 200
    assert ui_edit.json()["_version"] == 2
    assert (cli_edit.status_code, cli_edit.json()["code"]) == (409, "version_conflict")
    assert query.status_code == 409


def test_lists_paginate_and_filter_by_name(module_system: System) -> None:
    tag = uuid.uuid4().hex[:8]
    step = _unique("Reporter")
    module_system.upload_step(step, REPORTING_STEP.format(name=step, cache_id="x"))
    for index in range(3):
        module_system.upload_application(
            {"name": f"page_{tag}_{index}", "steps": [{"name": "a", "file": step, "host": "h"}]}
        )
    with module_system.client() as http:
        first = http.get("/applications", params={"q": tag, "limit": 2}).json()
        second = http.get("/applications", params={"q": tag, "limit": 2, "offset": 2}).json()
        steps = http.get("/steps", params={"q": step}).json()
        bad_limit = http.get("/applications", params={"limit": 0})

    assert [a["name"] for a in first] == [f"page_{tag}_0", f"page_{tag}_1"]
    assert [a["name"] for a in second] == [f"page_{tag}_2"]
    assert [s["name"] for s in steps] == [step]
    assert (bad_limit.status_code, bad_limit.json()["field"]) == (400, "limit")


def test_bad_input_gets_one_error_body_and_never_a_traceback(module_system: System) -> None:
    with module_system.client() as http:
        python_literal = http.post("/applications", content=b'{"name": "x",\n "a": True}')
        deep = http.post("/applications", content=b"[" * 5000)
        bad_step = http.post("/steps", json={"name": "Broken", "data": "class Broken(:\n"})
        unknown = http.get("/reports/nothing-here")

    assert python_literal.status_code == 400
    assert "line 2 column" in python_literal.json()["detail"]
    assert deep.status_code == 400
    assert bad_step.status_code == 400
    assert "line 1" in bad_step.json()["detail"]
    for reply in (python_literal, deep, bad_step, unknown):
        assert set(reply.json()) == {"code", "detail", "field"}
        assert "Traceback" not in reply.text


def test_docs_page_and_openapi_document_are_served(module_system: System) -> None:
    root = module_system.url.removesuffix("/api/v1")
    with module_system.client() as http:
        page = http.get(f"{root}/schema")
        document = http.get(f"{root}/schema/openapi.json").json()

    assert page.status_code == 200
    assert "swagger" in page.text.lower()
    # Swagger UI comes from the gateway itself, so the docs work offline.
    assert "cdn." not in page.text
    assert 'src="/schema/assets/swagger-ui-bundle.js"' in page.text
    script = httpx.get(f"{root}/schema/assets/swagger-ui-bundle.js")  # no credentials
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert len(script.content) > 100_000
    run_step = document["paths"]["/api/v1/steps/run"]["post"]
    assert {"200", "202", "400", "404", "401", "403", "503"} <= set(run_step["responses"])
    assert run_step["requestBody"]["content"]["application/json"]["example"]["name"]
    assert document["components"]["schemas"]["Error"]["required"] == ["code", "detail", "field"]
