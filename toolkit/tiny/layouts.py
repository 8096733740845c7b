"""Writing a tiny pipeline in a release's on-disk layout: a diffusers folder or BFL's single files."""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.tiny.specs import TinySpec

LAYOUTS = ("diffusers", "single_file")


def write_diffusers(pipe, spec: TinySpec, out_dir: Path) -> None:
    pipe.save_pretrained(out_dir, safe_serialization=True)
    index_path = out_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    index.update(spec.model_index_names)
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def write_single_files(pipe, spec: TinySpec, out_dir: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    from toolkit.convert.flux_keys import (
        flux2_transformer_diffusers_to_bfl,
        flux_transformer_diffusers_to_bfl,
        vae_diffusers_to_ldm,
    )

    to_bfl = flux2_transformer_diffusers_to_bfl if spec.family == "flux2" else flux_transformer_diffusers_to_bfl
    paths = {"transformer": out_dir / spec.transformer_file, "vae": out_dir / "ae.safetensors"}
    for name, state in (
        ("transformer", to_bfl(pipe.transformer.state_dict())),
        ("vae", vae_diffusers_to_ldm(pipe.vae.state_dict())),
    ):
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(paths[name]))
    return paths
