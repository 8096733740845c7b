"""``save.push_to_hub``: upload the finished job to a Hugging Face hub model repo (huggingface_hub's API).

At the end of training the repo ``hf_repo_id`` is created if needed (private with ``hf_private``) and one commit
uploads the final LoRA, the resolved config, the samples and the loss curve, with a README model card that names
the base model and the trigger word. Step checkpoints and optimizer state (``*.state.pt``) stay local.
Authentication is huggingface_hub's (``HF_TOKEN`` or ``huggingface-cli login``); a failed upload is an error
after the files are safely saved, so nothing is lost.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

UPLOADED = ("{name}.safetensors", "config.yaml", "loss.png", "loss_log.csv", "validation_log.csv", "samples/*")


def model_card(name: str, arch: str, base_model: str, trigger_word: str | None) -> str:
    trigger = f"\n\nTrigger word: `{trigger_word}`" if trigger_word else ""
    return (
        f"---\nbase_model: {base_model}\ntags:\n- lora\n- flux\n- text-to-image\n---\n\n# {name}\n\n"
        f"A LoRA for `{base_model}` ({arch}), trained with flux-lora-toolkit.{trigger}\n\n"
        f"`{name}.safetensors` loads in ComfyUI and in diffusers (`pipe.load_lora_weights`).\n"
    )


def push_to_hub(folder: Path, name: str, save_config, process_config) -> str:
    """Create ``save_config.hf_repo_id`` if needed and upload the job folder's results; returns the repo url."""
    from huggingface_hub import HfApi

    api = HfApi()
    repo_id = save_config.hf_repo_id
    url = api.create_repo(repo_id=repo_id, repo_type="model", private=save_config.hf_private, exist_ok=True)
    card = model_card(name, process_config.model.arch, process_config.model.name_or_path, process_config.trigger_word)
    (Path(folder) / "README.md").write_text(card, encoding="utf-8")
    patterns = [p.format(name=name) for p in UPLOADED] + ["README.md"]
    api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=str(folder),
        allow_patterns=patterns,
        commit_message=f"{name}: LoRA, config and samples",
    )
    log.info("pushed %s to %s", name, url)
    return str(url)
