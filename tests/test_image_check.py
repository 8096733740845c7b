"""toolkit.image_check: uploads are checked by decoding, not by their first bytes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from toolkit.image_check import image_problem

ROOT = Path(__file__).resolve().parent.parent


def png_bytes(size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_real_images_pass_and_disguised_files_fail(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    jpeg = tmp_path / "good.jpg"
    Image.new("RGB", (8, 8)).save(jpeg)
    disguised = tmp_path / "page.png"
    disguised.write_bytes(b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>")
    jpeg_html = tmp_path / "page.jpg"
    jpeg_html.write_bytes(b"\xff\xd8\xff\xe0<html></html>")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(png_bytes((64, 64))[:-40])
    assert image_problem(str(good)) is None and image_problem(str(jpeg)) is None
    for bad in (disguised, jpeg_html, truncated):
        assert "not a readable image" in image_problem(str(bad))


def test_the_cli_answers_per_file_in_order(tmp_path):
    good, bad = tmp_path / "a.png", tmp_path / "b.webp"
    good.write_bytes(png_bytes())
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 garbage")
    result = subprocess.run(
        [sys.executable, "-m", "toolkit.image_check", str(good), str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(result.stdout)
    assert [o["file"] for o in out] == [str(good), str(bad)]
    assert out[0]["error"] is None and "not a readable image" in out[1]["error"]
