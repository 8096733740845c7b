"""Is this file an image the trainer can read? Decoded, not sniffed.

A file whose first bytes are a PNG/JPEG/WEBP signature followed by anything else (HTML, a script) is
not an image: PIL's ``verify()`` checks the container and its checksums, then a fresh ``load()``
decodes every pixel, as the trainer will. The Next.js UI calls this on every upload before it
stores the file: ``python -m toolkit.image_check FILE...`` prints ``[{"file", "error"}]`` in the
order given (``error`` is null for a readable image) and exits 0; the Gradio app can call
:func:`image_problem` directly.
"""

from __future__ import annotations

import json
import sys
import warnings

from PIL import Image

# Decompression bombs: far above any training image (8192 x 8192), far below what exhausts memory.
MAX_PIXELS = 8192 * 8192


def image_problem(path: str) -> str | None:
    """Why ``path`` is not a readable image, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    return f"{img.width}x{img.height} pixels is more than the {MAX_PIXELS} this UI accepts"
                img.verify()
            with Image.open(path) as img:  # verify() leaves the image unusable: decode a fresh one
                img.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m toolkit.image_check FILE...", file=sys.stderr)
        return 2
    print(json.dumps([{"file": path, "error": image_problem(path)} for path in argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
