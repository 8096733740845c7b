"""toolkit.ui.datasets: the app's uploads written as a dataset; references paired with their targets by
file name; the YAML an edit preset gets (control_path, sample.ctrl_img). Starting edit jobs:
tests/ui/test_jobs.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from toolkit.ui import datasets as ui_datasets, jobs as ui_jobs, presets as ui_presets
from toolkit.paths import ROOT

EDIT_LABEL = "FLUX.2-dev edit (reference images)"
TINY_LABEL = "Tiny FLUX.2 demo (CPU)"


@pytest.fixture(autouse=True)
def tmp_is_a_data_root(tmp_path, monkeypatch):
    """The tests' jobs live under tmp_path, as an app started with --training-folder there would have them."""
    default = ui_jobs.ui_roots
    monkeypatch.setattr(ui_jobs, "ui_roots", lambda root=ROOT, extra=(): default(root, [*extra, tmp_path]))


def image(path: Path, color=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), color).save(path)
    return path


def test_write_dataset_copies_converts_and_captions(tmp_path):
    up = tmp_path / "up"
    images = [
        (image(up / "img 0.png"), ""),
        (image(up / "img 1.png", (40, 100, 200)), "a photo of [trigger], number 1"),
    ]
    bmp = image(up / "odd.bmp")
    folder = tmp_path / "dataset"
    assert ui_datasets.write_dataset(folder, images + [(bmp, "bmp one")]) == 3
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["000_img_0.png", "001_img_1.png", "001_img_1.txt", "002_odd.png", "002_odd.txt"]
    assert (folder / "000_img_0.png").read_bytes() == images[0][0].read_bytes()  # copied, not re-encoded
    assert (folder / "001_img_1.txt").read_text() == "a photo of [trigger], number 1\n"
    bad = up / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ui_datasets.UploadError, match="notes.png is not an image"):
        ui_datasets.write_dataset(tmp_path / "d2", [(bad, "")])


def test_references_pair_by_file_stem_in_any_format():
    targets = ["/up/a/0001.png", "/up/b/0002.jpg", "/up/c/my photo.webp"]
    references = ["/r/x/my photo.JPG", "/r/y/0001.webp", "/r/z/0002.png"]
    pairs, problems = ui_datasets.pair_references(targets, references)
    assert problems == []
    assert pairs == {0: Path("/r/y/0001.webp"), 1: Path("/r/z/0002.png"), 2: Path("/r/x/my photo.JPG")}
    # Written under the target's dataset stem, in the reference's own format.
    assert [ui_datasets.reference_name(i, targets[i], ref) for i, ref in pairs.items()] == [
        "000_0001.webp",
        "001_0002.png",
        "002_my_photo.jpg",
    ]
    assert ui_datasets.reference_name(0, "t.png", "r.bmp") == "000_t.png"  # converted to PNG
    assert ui_datasets.first_reference(targets, references) == "000_0001.webp"
    assert ui_datasets.first_reference(targets, references[:1]) == "002_my_photo.jpg"  # the first that has one
    assert ui_datasets.first_reference(targets, []) is None


def test_pairing_reports_every_problem_at_once():
    targets = ["/t/a.png", "/t/b.png", "/t/c.png", "/u/c.jpg"] + [f"/t/m{i}.png" for i in range(10)]
    references = ["/r/b.png", "/r/b.jpg", "/r/c.png", "/r/orphan.png", "/r/A.png"]
    pairs, problems = ui_datasets.pair_references(targets, references)
    assert pairs == {2: Path("/r/c.png")}
    assert problems[0].startswith("11 target image(s) without a reference of the same file name: a.png, m0.png")
    assert "and 3 more" in problems[0] and "target a.png -> reference a.png" in problems[0]
    assert problems[1] == "1 target image(s) with more than one reference: b.png (b.png, b.jpg); keep one per target"
    assert problems[2].startswith("target images sharing a file name: c.png / c.jpg")
    assert problems[3].startswith("2 reference image(s) without a target of the same file name: orphan.png, A.png")


def test_check_references_also_reads_every_file(tmp_path):
    target, ref = image(tmp_path / "t" / "a.png"), image(tmp_path / "r" / "a.png")
    assert ui_datasets.check_references([target], [ref]) == {0: ref}
    ref.write_bytes(b"\x89PNG truncated")
    with pytest.raises(ui_datasets.UploadError, match="a.png' is not a readable image") as refused:
        ui_datasets.check_references([target], [ref])
    assert refused.value.problems and "do not pair with the 1 target image(s)" in str(refused.value)
    control = tmp_path / "control"
    ui_datasets.write_references(control, [target, target], {1: image(tmp_path / "r" / "b.bmp")})
    assert [p.name for p in control.iterdir()] == ["001_a.png"]


def test_edit_preset_yaml_points_at_the_uploaded_references(tmp_path):
    preset = ui_presets.preset_by_label(EDIT_LABEL)
    assert ui_presets.is_edit(preset) and not ui_presets.is_edit(ui_presets.preset_by_label(TINY_LABEL))
    fields = ui_presets.UserFields.from_preset(preset, name="robots")
    raw = ui_presets.build_job_config(preset, fields, str(tmp_path / "out"), "000_edit_00.png")
    job, problems = ui_jobs.check_yaml(ui_presets.to_yaml(raw, preset))
    assert problems == []
    process = job.raw["config"]["process"][0]
    control = tmp_path / "out" / "robots" / "dataset" / "control"
    assert process["datasets"][0]["folder_path"] == str(control.parent)
    assert process["datasets"][0]["control_path"] == str(control)
    assert process["sample"]["ctrl_img"] == str(control / "000_edit_00.png")
    assert job.control_folders == [control]
    assert job.sample_references == [("config.process[0].sample.ctrl_img", control / "000_edit_00.png")]
    # The default training folder (relative, as run.py's cwd sees it): ctrl_img is still absolute.
    raw = ui_presets.build_job_config(preset, fields, None, "000_edit_00.png")
    process = raw["config"]["process"][0]
    assert process["datasets"][0]["control_path"] == "output/[name]/dataset/control"
    assert process["sample"]["ctrl_img"] == str(ROOT / "output" / "[name]" / "dataset" / "control" / "000_edit_00.png")
    # No references yet: the preset's own ctrl_img stays (the start check names it).
    raw = ui_presets.build_job_config(preset, fields)
    assert (
        raw["config"]["process"][0]["sample"]["ctrl_img"]
        == preset["config"]["config"]["process"][0]["sample"]["ctrl_img"]
    )
    # Other presets ignore references.
    tiny = ui_presets.preset_by_label(TINY_LABEL)
    raw = ui_presets.build_job_config(tiny, ui_presets.UserFields.from_preset(tiny), None, "000_x.png")
    assert "control_path" not in raw["config"]["process"][0]["datasets"][0]
    assert "ctrl_img" not in (raw["config"]["process"][0].get("sample") or {})
