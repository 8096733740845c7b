"""Writing a tiny model into any folder (diffusers folder, BFL single files) or into a huggingface_hub cache,
for tests and the CLI (``python -m toolkit.tiny``). The ``tiny:`` weights the run time loads come from
:mod:`toolkit.tiny.cache` instead."""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

from toolkit.tiny.builders import build_tiny_pipeline
from toolkit.tiny.layouts import LAYOUTS, write_diffusers, write_single_files
from toolkit.tiny.specs import TINY_IDS, tiny_spec


def save_diffusers_folder(arch: str, out_dir, seed: int = 0) -> Path:
    """Write the tiny ``arch`` as a diffusers folder (``save_pretrained`` layout) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_diffusers(build_tiny_pipeline(arch, seed), tiny_spec(arch), out_dir)
    return out_dir


def save_single_files(arch: str, out_dir, seed: int = 0) -> dict[str, Path]:
    """Write BFL's single files (transformer under its release name + ``ae.safetensors``) into ``out_dir``.

    Returns ``{"transformer": path, "vae": path}``. Weights equal ``save_diffusers_folder(arch, ..., seed)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_single_files(build_tiny_pipeline(arch, seed), tiny_spec(arch), out_dir)


def _repo_folder(repo_id: str) -> str:
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id must look like 'org/name', got '{repo_id}'")
    return "models--" + repo_id.replace("/", "--")


def save_hub_cache(arch: str, cache_dir, repo_id: str, seed: int = 0, single_files: bool = True) -> Path:
    """Write the tiny ``arch`` into a huggingface_hub cache as repo ``repo_id``; returns the snapshot folder.

    Layout: ``cache_dir/models--org--name/refs/main`` (the commit) and ``snapshots/<commit>/`` with the
    diffusers folder and, like BFL's repos, the single files at its root (``single_files=True``). Files are
    stored in the snapshot itself (as huggingface_hub does where symlinks are unavailable), so
    ``snapshot_download(repo_id, cache_dir=cache_dir)`` resolves it with ``HF_HUB_OFFLINE=1``.
    """
    spec = tiny_spec(arch)
    repo = Path(cache_dir) / _repo_folder(repo_id)
    commit = hashlib.sha1(f"{arch}:{seed}:{repo_id}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    snapshot.mkdir(parents=True)
    pipe = build_tiny_pipeline(arch, seed)
    write_diffusers(pipe, spec, snapshot)
    if single_files:
        write_single_files(pipe, spec, snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.tiny", description="Write a tiny random FLUX model in a real on-disk layout."
    )
    parser.add_argument("--arch", required=True, choices=TINY_IDS, help="a tiny model id: an arch, or <arch>-<release>")
    parser.add_argument("--layout", required=True, choices=(*LAYOUTS, "hub_cache"))
    parser.add_argument("--out", required=True, type=Path, help="output folder (the cache_dir for hub_cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repo-id", default=None, help="repo id for --layout hub_cache, e.g. org/tiny-flux2")
    args = parser.parse_args(argv)
    if args.layout == "diffusers":
        path = save_diffusers_folder(args.arch, args.out, args.seed)
    elif args.layout == "single_file":
        save_single_files(args.arch, args.out, args.seed)
        path = args.out
    else:
        if not args.repo_id:
            parser.error("--layout hub_cache needs --repo-id")
        path = save_hub_cache(args.arch, args.out, args.repo_id, args.seed)
    print(path)  # the CLI's output: where the model is
    return path
