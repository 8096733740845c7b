import json
import subprocess
import sys

import yaml

from toolkit.ui.schema import export, presets, validate_dict
from toolkit.paths import ROOT


def test_presets_cover_every_arch_and_validate():
    found = presets()
    assert {p["arch"] for p in found} == {"flux", "flux2", "flux2_klein_4b", "flux2_klein_9b"}
    labels = {p["label"] for p in found}
    assert {"FLUX.2-dev", "FLUX.2-klein-base 4B", "FLUX.2-klein-base 9B", "FLUX.1-dev", "FLUX.1-schnell"} <= labels
    for preset in found:
        # The examples' dataset (and reference) paths are placeholders: Check says so, and nothing else.
        problems = validate_dict(preset["config"])["problems"]
        placeholder = "/path/to/" in yaml.safe_dump(preset["config"])
        assert bool(problems) == placeholder, (preset["id"], problems)
        for problem in problems:
            assert problem["path"].endswith((".folder_path", ".ctrl_img")) and "does not exist" in problem["message"]


def test_export_has_schema_and_capabilities():
    data = export()
    assert "JobConfig" in data["schema"].get("title", "") or "properties" in data["schema"]
    assert data["archs"]["flux2"]["capabilities"]["bucket_divisibility"] == 16
    assert data["archs"]["flux2_klein_4b"]["capabilities"]["real_cfg"] is True


def test_validate_cli_reports_paths_without_torch(tmp_path):
    raw = presets()[0]["config"]
    raw["config"]["process"][0]["model"]["quantise"] = True
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    code = "import sys, runpy; sys.argv=['x','validate',sys.argv[1]]; import toolkit.ui.schema as u; r=u.main(sys.argv[1:]); assert 'torch' not in sys.modules; sys.exit(r)"
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert problems[0]["path"] == "config.process[0].model.quantise" and "quantize" in problems[0]["message"]
