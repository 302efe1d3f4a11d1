"""Content packs on disk: SyncPack layout, archives, and checks before upload."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from iscli.errors import LocalFileError
from iscli.pack import Pack, read_pack, write_pack

STEP = (
    "from ipaascore.BaseStep import BaseStep\n\n\nclass Ping(BaseStep):\n"
    "    def execute(self):\n        pass\n"
)
APPLICATION = {"name": "ping_app", "steps": [{"name": "Ping", "file": "Ping"}]}
CONFIGURATION = {"name": "lab", "configuration_data": [{"name": "host", "value": "h"}]}
SCHEDULE = {
    "application_id": "ping_app",
    "entry_id": "ping_every_minute",
    "params": {},
    "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}},
}


def make_syncpack(root: Path) -> Path:
    """A SyncPack project: the pack folder sits inside the project folder."""
    pack = root / "ping_syncpack"
    for folder in ("steps", "apps", "configs"):
        (pack / folder).mkdir(parents=True)
    (pack / "__init__.py").write_text("")
    (pack / "steps" / "__init__.py").write_text("")
    (pack / "steps" / "Ping.py").write_text(STEP)
    (pack / "apps" / "ping_app.json").write_text(json.dumps(APPLICATION))
    (pack / "configs" / "lab.json").write_text(json.dumps(CONFIGURATION))
    (pack / "meta.json").write_text(
        json.dumps({"name": "ping_syncpack", "version": "2.1.0", "schedules": [SCHEDULE]})
    )
    (root / "setup.py").write_text("print('not part of the pack')\n")
    return root


def sample_pack() -> Pack:
    return Pack(
        meta={"name": "p", "version": "1", "schedules": [SCHEDULE]},
        steps={"Ping": STEP},
        applications={"ping_app": APPLICATION},
        configurations={"lab": CONFIGURATION},
        schedules=[SCHEDULE],
    )


def test_syncpack_project_folder_reads_as_is(tmp_path: Path) -> None:
    pack = read_pack(make_syncpack(tmp_path))

    assert pack.meta["version"] == "2.1.0"
    assert pack.steps == {"Ping": STEP}
    assert pack.applications == {"ping_app": APPLICATION}
    assert pack.configurations == {"lab": CONFIGURATION}
    assert pack.schedules == [SCHEDULE]


def test_definitions_come_in_upload_order(tmp_path: Path) -> None:
    kinds = [d.kind for d in read_pack(make_syncpack(tmp_path)).definitions()]

    assert kinds == ["step", "configuration", "application", "schedule"]


def test_syncpack_wheel_reads_like_its_folder(tmp_path: Path) -> None:
    source = make_syncpack(tmp_path / "project")
    wheel = tmp_path / "ping_syncpack-2.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in (source / "ping_syncpack").rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(source).as_posix())
        archive.writestr("ping_syncpack-2.1.0.dist-info/METADATA", "Name: ping_syncpack\n")

    pack = read_pack(wheel)

    assert (pack.steps, pack.applications, pack.schedules) == (
        {"Ping": STEP},
        {"ping_app": APPLICATION},
        [SCHEDULE],
    )


@pytest.mark.parametrize("name", ["pack", "pack.zip", "pack.tar.gz"])
def test_written_pack_reads_back_the_same(tmp_path: Path, name: str) -> None:
    write_pack(sample_pack(), tmp_path / name)

    again = read_pack(tmp_path / name)

    assert (again.steps, again.applications, again.configurations, again.schedules) == (
        {"Ping": STEP},
        {"ping_app": APPLICATION},
        {"lab": CONFIGURATION},
        [SCHEDULE],
    )


def test_invalid_json_in_an_archive_names_member_line_and_column(tmp_path: Path) -> None:
    archive_path = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("apps/broken.json", '{\n  "name": "x",\n  "steps": [None]\n}\n')

    with pytest.raises(
        LocalFileError,
        match=r"bad.zip!apps/broken.json' is not valid JSON: "
        r"Expecting value at line 3 column 13",
    ):
        read_pack(archive_path)


def test_step_that_does_not_compile_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "Bad.py").write_text("class Bad(\n    pass\n")

    with pytest.raises(LocalFileError, match=r"Bad\.py' does not compile: .* at line 1"):
        read_pack(tmp_path)


def test_folder_without_pack_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")

    with pytest.raises(LocalFileError, match=r"holds no meta\.json and no steps/"):
        read_pack(tmp_path)


def test_export_refuses_to_write_into_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")

    with pytest.raises(LocalFileError, match="already exists and is not empty"):
        write_pack(sample_pack(), tmp_path)


def test_name_that_is_not_a_safe_file_name_is_not_written(tmp_path: Path) -> None:
    pack = Pack(meta={}, applications={"../escape": APPLICATION})

    with pytest.raises(LocalFileError, match="cannot be written as a file name"):
        write_pack(pack, tmp_path / "out")
