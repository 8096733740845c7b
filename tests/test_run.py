"""run.py's command line: --name, --log, bare names, several configs."""

from __future__ import annotations

import pytest

import run
from tests.jobs.test_generate_job import write_job


@pytest.mark.slow
def test_name_override_and_log_file(tmp_path, tiny):
    job = write_job(
        tmp_path, {"name_or_path": str(tiny("flux2_klein_4b")), "arch": "flux2_klein_4b"}, ["a fox"], sample_steps=1
    )
    log_file = tmp_path / "run.log"
    assert run.main([str(job), "--name", "renamed", "--log", str(log_file)]) == 0
    assert (tmp_path / "out" / "renamed" / "0000_11.png").is_file()  # output_folder used [name]
    assert "wrote 1 image(s)" in log_file.read_text()


def test_bare_name_is_looked_up_in_config_dir(tmp_path, monkeypatch, caplog):
    import toolkit.job

    (tmp_path / "my_job.yaml").write_text("job: generate\nconfig:\n  name: x\n  process: []\n")
    monkeypatch.setattr(toolkit.job, "CONFIG_DIR", tmp_path)
    assert run.main(["my_job"]) == 1
    assert "my_job.yaml" in caplog.text and "process" in caplog.text  # found, then validated


def test_missing_config_lists_what_was_tried(caplog):
    assert run.main(["no_such_job_anywhere"]) == 1
    assert "no_such_job_anywhere" in caplog.text
