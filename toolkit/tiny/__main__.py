"""``python -m toolkit.tiny --arch flux2 --layout diffusers --out DIR``: see :func:`toolkit.tiny.export.main`."""

from toolkit.tiny.export import main

main()
