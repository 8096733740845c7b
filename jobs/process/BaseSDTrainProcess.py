"""LoRA training orchestration: setup -> fit -> save, for every architecture.

No architecture branches here: the model class answers every model-specific
question (`encode_images`, `encode_prompt`, `get_noise_prediction`,
`get_loss_target`, `lora_targets`, `shift_mu`, `capabilities`). Subclasses (the
`sd_trainer` extension) supply the loss of one batch in `compute_loss`.

Job folder (`<training_folder>/<name>/`), the contract every front end reads:
  config.yaml                      the resolved job config
  <name>_<step:09d>.safetensors    LoRA checkpoints (+ .state.pt: optimizer, RNG, ... for resume)
  <name>.safetensors               the final LoRA
  samples/<step:09d>_<i>.<fmt>     sample images
  progress.jsonl, loss_log.csv, loss.png   (see toolkit/progress.py)
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml
from tqdm import tqdm

from jobs.process.BaseProcess import BaseProcess
from toolkit import checkpoint as ckpt
from toolkit.errors import ConfigError, ToolkitError
from toolkit.progress import ProgressLog, plot_loss
from toolkit.util.transfer import to_device

if TYPE_CHECKING:
    from toolkit.data.items import TrainItem
    from toolkit.data.latent_cache import LatentCache, TextEmbeddingCache
    from toolkit.distributed import Distributed
    from diffusers.training_utils import EMAModel
    from toolkit.models.base_model import BaseModel, ImageRequest

log = logging.getLogger(__name__)


class TrainingError(ToolkitError):
    pass


class BaseSDTrainProcess(BaseProcess):
    def __init__(self, index, job, config):
        super().__init__(index, job, config)
        self.name = job.name
        self.folder = Path(config.training_folder).expanduser() / self.name
        self.progress = ProgressLog(self.folder)
        # What plan() checks and finds (before any weights load)
        self.dist: Distributed | None = None
        self.model_cls: type | None = None
        self.items: list[TrainItem] = []
        self.sample_specs: list = []  # (SampleItem, PromptSpec) per sample
        self.device: torch.device | None = None
        # What setup() builds
        self.model: BaseModel | None = None
        self.sample_requests: list[ImageRequest] = []
        self.latent_cache: LatentCache | None = None
        self.reference_cache: LatentCache | None = None
        self.text_cache: TextEmbeddingCache | None = None
        self.vae_parked = False  # every latent is cached: the VAE waits on the CPU until sampling
        self.loader: torch.utils.data.DataLoader | None = None
        self.params: list[torch.nn.Parameter] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None  # torch.optim.lr_scheduler.LRScheduler
        self.ema: EMAModel | None = None
        self.generator: torch.Generator | None = None
        self.timestep_type = ""
        # Where training stands
        self.step = 0
        self.loader_state: dict | None = None
        self.reg_loader: torch.utils.data.DataLoader | None = None  # is_reg datasets, alternate steps
        self.reg_loader_state: dict | None = None
        self.item_multiplier = None  # toolkit.network.ItemMultiplier when a dataset sets network_weight
        self.preservation = None  # toolkit.train.preservation.Preservation (DOP, blank prompt preservation)
        self.reporter = None  # toolkit.train.reporter.Reporter: step log, validation, timing, wandb
        self.last_saved_step = -1
        self.stop_requested = False
        self.folder_lock = None

    # ================================================================== setup
    def plan(self):
        """Everything checkable before weights load (toolkit/validate.py, the one validation path): one
        ConfigError listing every problem; then the training folder is created."""
        from toolkit.arch_registry import model_class
        from toolkit.distributed import Distributed
        from toolkit.validate import plan_train

        cfg = self.config
        self.dist = Distributed()
        self.progress.enabled = self.dist.is_main
        checked = self.job.plans[self.index] if self.job.plans else None
        if checked is None:
            problems, checked = plan_train(cfg, self.key, world=self.dist.world, shards_model=self.dist.shards_model)
            if problems:
                raise ConfigError(problems)
        self.model_cls = model_class(checked.spec)
        self.sample_specs = checked.sample_specs
        self.items = checked.items
        # accelerate assigned each process its own device (cuda:<local rank>, or the CPU with gloo)
        self.device = self.dist.device if self.dist.enabled else checked.device
        effective = cfg.train.batch_size * self.dist.world * cfg.train.gradient_accumulation_steps
        log.info(
            "process %d of %d on %s; effective batch size %d (batch_size %d x %d process(es) x %d accumulation)",
            self.dist.rank,
            self.dist.world,
            self.device,
            effective,
            cfg.train.batch_size,
            self.dist.world,
            cfg.train.gradient_accumulation_steps,
        )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise TrainingError(f"{self.key}.training_folder: cannot write to '{self.folder}': {exc}") from exc
        log.info("%d training items from %d dataset(s)", len(self.items), len(cfg.datasets))

    def setup(self) -> None:
        cfg = self.config
        if cfg.logging.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        self.plan()
        if self.dist.is_main:  # one run per job folder (the other ranks of this run share it)
            from toolkit.job_lock import JobFolderLock

            self.folder_lock = JobFolderLock(self.folder).acquire()
        # The LoRA's initial A matrices come from torch's global RNG: seed it so runs repeat.
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        self._write_resolved_config()
        from toolkit.models.base_model import LoadOptions
        from toolkit.models.offload_plan import TrainingShape

        options = LoadOptions(
            adapter_type=cfg.network.type,
            shard_transformer=self.dist.shards_model,  # FSDP: it stays on the CPU until sharded
            training_shape=TrainingShape.from_process_config(cfg, self.model_cls.capabilities.reference_max_pixels),
        )
        self.model = self.model_cls(cfg.model, device=self.device, options=options)
        self.model.load_model()
        self._prepare_sample_requests()
        self._prepare_data()
        self._prepare_network()
        self._prepare_optimizer()
        self._resume()

    def _write_resolved_config(self) -> None:
        if not self.dist.is_main:
            return
        data = self.job.job_config.model_dump(mode="json")
        text = yaml.safe_dump(data, sort_keys=False)
        ckpt.atomic_write(self.folder / "config.yaml", lambda tmp: Path(tmp).write_text(text))
        ckpt.clean_temp_files(self.folder)

    def _prepare_sample_requests(self) -> None:
        from toolkit.models.base_model import ImageRequest

        defaults = self.model.sample_defaults()
        self.sample_requests = []
        for item, spec in self.sample_specs:
            base = {
                "neg": item.neg,
                "width": item.width,
                "height": item.height,
                "seed": item.seed,
                "guidance_scale": item.guidance_scale,
                "sample_steps": item.sample_steps,
                "network_multiplier": item.network_multiplier,
                "ctrl_img": tuple(item.ctrl_imgs),
            }
            base = {**defaults, **{k: v for k, v in base.items() if v is not None}}
            self.sample_requests.append(ImageRequest.from_spec(spec, base))

    def _prepare_data(self) -> None:
        from toolkit.data.dataset import caption_variants, make_dataloader
        from toolkit.data.latent_cache import LatentCache, TextEmbeddingCache
        from toolkit.data.references import load_reference
        from toolkit.train.preservation import Preservation
        from toolkit.util.transfer import pins_memory

        cfg, model = self.config, self.model
        self.preservation = Preservation(cfg.train)
        references = list(dict.fromkeys(ref for item in self.items for ref in item.references))
        vae_id = model.vae_id() if references or any(item.latents_cached for item in self.items) else None
        if any(item.latents_cached for item in self.items):
            self.latent_cache = LatentCache(model.encode_images, vae_id=vae_id, show_progress=self.dist.is_main)
            self._fill_cache(self.latent_cache, self.items)
        if references:  # always cached: encoded once, never per step
            self.reference_cache = LatentCache(
                model.encode_images,
                vae_id=vae_id,
                load_image=load_reference,
                show_progress=self.dist.is_main,
                desc="Caching reference latents",
            )
            self._fill_cache(self.reference_cache, references)
        if cfg.caches_text_embeddings or cfg.train.unload_text_encoder:
            self.text_cache = TextEmbeddingCache(model.encode_prompt)
            self.text_cache.fill(
                caption_variants(self.items) + self.preservation.cache_texts(self.items) + self.extra_captions()
            )
            texts = [t for request in self.sample_requests for t in model.sampling_texts(request)]
            model.cache_prompts(texts)
            self.text_cache.release_encoder()
            # unload_text_encoder drops it; cache_text_embeddings parks it on the CPU.
            model.unload_text_encoders(keep_on_cpu=not cfg.train.unload_text_encoder)
            log.info(
                "text embeddings cached (%d captions); text encoder %s",
                len(self.text_cache),
                "unloaded" if cfg.train.unload_text_encoder else "moved to CPU",
            )
        # With every latent cached the VAE is only needed to decode samples: park it on the CPU meanwhile.
        self.vae_parked = self.latent_cache is not None and all(item.latents_cached for item in self.items)
        if self.vae_parked:
            model.vae.to("cpu")
        # Every process walks the same global batches (batch_size x processes) and keeps its shard.
        global_batch = cfg.train.batch_size * self.dist.world
        first = cfg.datasets[0]  # ai-toolkit: the first dataset's worker settings load every dataset

        def loader(items):
            return (
                make_dataloader(
                    items,
                    global_batch,
                    cfg.train.seed,
                    latent_cache=self.latent_cache,
                    reference_cache=self.reference_cache,
                    num_workers=first.num_workers,
                    prefetch_factor=first.prefetch_factor,
                    pin_memory=pins_memory(self.device),
                )
                if items
                else None
            )

        # Regularisation images come from a loader of their own, on alternate steps (toolkit/train/batches.py).
        self.loader = loader([item for item in self.items if not item.is_reg])
        self.reg_loader = loader([item for item in self.items if item.is_reg])

    def extra_captions(self) -> list[str]:
        """Texts besides the dataset captions whose embeddings the text cache must hold."""
        return []

    def _fill_cache(self, cache, items) -> None:
        # The main process encodes first so the others read its disk cache instead of racing it.
        if self.dist.is_main:
            cache.fill(items)
        self.dist.barrier()
        if not self.dist.is_main:
            cache.fill(items)

    def _prepare_network(self) -> None:
        from toolkit.lora_format import bfl_module_name
        from toolkit.network import attach_lora, select_targets

        net = self.config.network
        transformer = self.model.transformer
        targets = select_targets(
            self.model.lora_targets(),
            net.network_kwargs.only_if_contains,
            net.network_kwargs.ignore_if_contains,
            f"{self.key}.network",
            bfl_name=lambda module: bfl_module_name(self.model.arch, module),
        )
        self.params = attach_lora(transformer, targets, net.adapter_rank, net.adapter_alpha, net.type, net.lokr_factor)
        if any(item.network_weight != 1 for item in self.items):
            from toolkit.network import ItemMultiplier

            self.item_multiplier = ItemMultiplier(transformer)
        if self.dist.shards_model:
            self.dist.shard_model(transformer, self.model.offload_blocks("transformer"), self.params)
        fsdp_checkpointing = self.dist.fsdp is not None and self.dist.fsdp.activation_checkpointing
        if self.config.train.gradient_checkpointing or fsdp_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        count = sum(p.numel() for p in self.params)
        log.info(
            "%s rank %d alpha %g on %d modules: %.2fM parameters",
            net.type,
            net.adapter_rank,
            net.adapter_alpha,
            len(targets),
            count / 1e6,
        )

    def _prepare_optimizer(self) -> None:
        from toolkit.ema import build_ema
        from toolkit.optim import build_optimizer, build_scheduler

        train = self.config.train
        self.optimizer = build_optimizer(train.optimizer, self.params, train.lr, train.optimizer_params)
        self.scheduler = build_scheduler(
            train.lr_scheduler, self.optimizer, train.steps, train.lr_warmup_steps, train.lr_scheduler_params
        )
        if train.ema_config.use_ema:
            self.ema = build_ema(self.params, train.ema_config.ema_decay)
        self.generator = torch.Generator("cpu").manual_seed(train.seed)
        self.timestep_type = train.timestep_type or self.model.capabilities.default_timestep_type

    def _resume(self) -> None:
        from toolkit.network import load_lora_state_dict

        state = ckpt.load_latest_state(self.folder, self.name)
        if state is None:
            return
        load_lora_state_dict(self.model.transformer, state["lora"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        random.setstate(state["python_random"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = self.last_saved_step = state["step"]
        self.loader_state = self._resume_position(state)
        self.reg_loader_state = self._resume_position({**state, "loader": state.get("reg_loader")})
        self.progress.truncate_after(self.step)
        log.info("resumed from step %d (%s)", self.step, ckpt.step_file(self.folder, self.name, self.step))

    def _resume_position(self, state: dict) -> dict | None:
        """Where the data order resumes. The position counts global batches (batch_size x processes): with a
        different global batch it would land mid-epoch on other items, so the next epoch starts instead."""
        position, saved = state["loader"], state.get("global_batch")
        current = self.config.train.batch_size * self.dist.world
        if saved is None or saved == current or position is None:
            return position
        log.warning(
            "this checkpoint was trained with global batches of %d (batch_size x processes) and this run uses "
            "%d (%d process(es)): the effective batch size changes and the data order restarts at epoch %d",
            saved,
            current,
            self.dist.world,
            position["epoch"] + (1 if position["batch"] else 0),
        )
        if position["batch"] == 0:
            return position
        return {**position, "epoch": position["epoch"] + 1, "batch": 0}

    # ================================================================== loop
    def run(self) -> None:
        try:
            self._run()
        finally:  # the folder is free once this run has saved and logged its end (or failed)
            self.cleanup_lock()
            self._close_loaders()

    def _close_loaders(self) -> None:
        """The DataLoader worker processes (``num_workers``) end with the run, not at some later collection."""
        from toolkit.data.dataset import close_dataloader

        for loader in (self.loader, self.reg_loader):
            close_dataloader(loader)

    def _run(self) -> None:
        self.setup()
        total = self.config.train.steps
        self.progress.event("start", step=self.step, total_steps=total, name=self.name)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:  # Ctrl-C and a UI's Stop button (SIGTERM): finish the step, save, exit
            signal.signal(sig, self._request_stop)
        try:
            self.fit()
        except KeyboardInterrupt:
            self._stop_and_save()
            raise
        except BaseException as exc:
            self.progress.event("end", state="error", step=self.step, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if getattr(self, "reporter", None) is not None:
                self.reporter.finish()
        if self.stop_requested:
            self._stop_and_save()
            raise KeyboardInterrupt("stopped by signal")
        self.progress.event("end", state="finished", step=self.step, path=f"{self.name}.safetensors")

    def cleanup_lock(self) -> None:
        if self.folder_lock is not None:
            self.folder_lock.release()
            self.folder_lock = None

    def _request_stop(self, signum, frame) -> None:
        if self.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt(f"signal {signum}")
        log.warning("stop requested (signal %d): finishing step %d, then saving", signum, self.step + 1)
        self.stop_requested = True

    def _stop_and_save(self) -> None:
        log.warning("stopped at step %d: saving before exit", self.step)
        if self.step > self.last_saved_step:
            self.save()
        self.progress.event("end", state="stopped", step=self.step)

    def fit(self) -> None:
        train, sample = self.config.train, self.config.sample
        total = train.steps
        if self.step >= total:
            if not (self.folder / f"{self.name}.safetensors").exists():
                self.save(final=True)  # killed between the last step save and the final file
            log.info(
                "already trained to step %d of %d; nothing to do (raise train.steps to continue)", self.step, total
            )
            return
        from toolkit.train.reporter import Reporter

        self.reporter = Reporter(
            self.config, self.progress, self.name, self.job.job_config.model_dump(mode="json"), self.device
        )
        timed, first_step = self.reporter.timer.section, self.step + 1
        # ai-toolkit's rule: skip_first_sample wins; force_first_sample also samples when resuming.
        first = not train.skip_first_sample and (self.step == 0 or train.force_first_sample)
        if first and not train.disable_sampling:
            self.sample()
        batches = self._batches()
        bar = tqdm(
            total=total,
            initial=self.step,
            desc=self.name,
            unit="step",
            dynamic_ncols=True,
            disable=not self.dist.is_main,
        )
        self._pending_losses = []
        logged_at, logged_step = time.perf_counter(), self.step
        while self.step < total:
            if self.dist.any(self.stop_requested):
                self.stop_requested = True
                break
            # The step's loss stays on the device: the host waits for the GPU only when a loss is read.
            self._pending_losses.append((self.step + 1, self.train_step(batches)))
            self.step += 1
            self.model.report_compile()
            bar.update(1)
            with timed("validation"):
                self.after_step(first_step)
            save_now = self.step < total and self.step % self.config.save.save_every == 0
            if self.step % self.config.logging.log_every == 0 or self.step == total or save_now:
                loss, lr = self.read_losses(), self.scheduler.get_last_lr()[0]
                now = time.perf_counter()
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
                self.reporter.step(self.step, total, loss, lr, (now - logged_at) / max(self.step - logged_step, 1))
                logged_at, logged_step = now, self.step
            self.reporter.performance(self.step)
            if save_now:
                with timed("saving"):
                    self.save()
            if (
                self.step < total
                and not train.disable_sampling
                and self.step >= sample.sample_start_step
                and self.step % sample.sample_every == 0
            ):
                with timed("sampling"):
                    self.sample()
        bar.close()
        if self.stop_requested:
            return
        self.save(final=True)
        if not train.disable_sampling:
            self.sample()
        if self.config.save.push_to_hub and self.dist.is_main:
            from toolkit.integrations.hub_push import push_to_hub

            push_to_hub(self.folder, self.name, self.config.save, self.config)

    def after_step(self, first_step: int) -> None:
        """Called after each optimizer step (``first_step``: this run's first); the recipe adds validation."""

    def _batches(self):
        """The batch streams (toolkit/train/batches.py), resuming after the last batches the checkpoint consumed."""
        from toolkit.train.batches import TrainingBatches

        return TrainingBatches(
            self.config, self.dist, self.loader, self.reg_loader, self.loader_state, self.reg_loader_state
        )

    def train_step(self, batches) -> torch.Tensor:
        """One optimizer step over `gradient_accumulation_steps` batches; returns this process's share of the
        mean loss as a 0-d device tensor (no host synchronisation: `read_losses` reads it)."""
        train = self.config.train
        accumulation = train.gradient_accumulation_steps
        losses = []
        timed = self.reporter.timer.section
        for _ in range(accumulation):
            with timed("data"):
                shard, lo, hi, size = batches.next(self.step + 1)
                self.loader_state, self.reg_loader_state = batches.states
            # The shard's mean loss weighted by its share: summed over processes, the global batch mean.
            with timed("forward"):
                loss = self.compute_loss(shard, lo, hi, size) * ((hi - lo) / size)
            # Even an empty shard (weight 0) runs backward: a sharded (FSDP) model needs every process in it.
            with timed("backward"):
                (loss / accumulation).backward()
            losses.append(loss.detach())
        if self.item_multiplier is not None:
            self.item_multiplier.clear()
        with timed("optimizer"):
            self.dist.sum_gradients(self.params)
            if train.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.params, train.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.step(self.params)
        return torch.stack(losses).mean()

    def read_losses(self) -> float:
        """The global loss of the last step, read from the device with one synchronisation for every step since
        the last read (called at each logging interval and before each save). A non-finite loss in any of
        those steps stops the run here, before a save could write what it did to the weights."""
        pending, self._pending_losses = self._pending_losses, []
        values = torch.stack([loss for _, loss in pending]).double().cpu().tolist()
        last = None
        for (step, _), value in zip(pending, values):
            last = self.dist.sum_scalar(value)
            if not math.isfinite(last):
                raise TrainingError(
                    f"loss is {last} at step {step}; stopping before it overwrites a checkpoint "
                    f"(last good save: step {max(self.last_saved_step, 0)}). Lower train.lr or check the data"
                )
        return last

    def compute_loss(self, batch, lo: int, hi: int, size: int) -> torch.Tensor:
        """Mean loss of `batch`, this process's items [lo, hi) of a global batch of `size`.

        Random draws (noise, timesteps) are made for the whole global batch and sliced, so the
        result does not depend on how many processes share the batch.
        """
        raise NotImplementedError

    # ================================================================== conditioning
    def batch_latents(self, batch) -> torch.Tensor:
        if batch.latents is not None:
            return to_device(batch.latents, self.device)
        with torch.no_grad():
            return self.model.encode_images(batch.images)

    def batch_references(self, batch) -> list[torch.Tensor] | None:
        """The batch's cached reference latents on the device: one (B, C, h_i, w_i) per reference, or None."""
        if batch.references is None:
            return None
        return [to_device(ref, self.device) for ref in batch.references]

    def batch_prompt_embeds(self, captions: list[str]):
        if self.text_cache is not None:
            return self.text_cache.get(captions).to(self.device)
        with torch.no_grad():
            return self.model.encode_prompt(captions)

    # ================================================================== outputs
    def _weights_context(self):
        import contextlib

        from toolkit.ema import ema_weights

        return ema_weights(self.ema, self.params) if self.ema is not None else contextlib.nullcontext()

    def sample(self) -> None:
        if not self.sample_requests:
            return
        # A sharded transformer runs only with every process taking part; otherwise the others just wait.
        if not self.dist.is_main and not self.dist.shards_model:
            self.dist.barrier()
            return
        folder = self.folder / "samples"
        if self.dist.is_main:
            folder.mkdir(exist_ok=True)
        fmt = self.config.sample.format
        self.model.transformer.eval()
        paths = []
        if self.vae_parked:
            self.model.vae.to(self.device)
        with self._weights_context():
            for i, request in enumerate(
                tqdm(self.sample_requests, desc="sampling", unit="img", leave=False, disable=not self.dist.is_main)
            ):
                image = self.model.generate_images([request])[0]
                if not self.dist.is_main:
                    continue
                path = folder / f"{self.step:09d}_{i}.{fmt}"
                ckpt.atomic_write(
                    path, lambda tmp, image=image: image.save(tmp, format="JPEG" if fmt == "jpg" else fmt.upper())
                )
                paths.append(str(path.relative_to(self.folder)))
        if self.vae_parked:
            self.model.vae.to("cpu")
        self.model.transformer.train()
        self.progress.event("sample", step=self.step, paths=paths)
        if getattr(self, "reporter", None) is not None:
            self.reporter.samples(self.step, paths, [request.prompt for request in self.sample_requests])
        self.dist.barrier()

    def lora_file_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(file tensors in the configured format (EMA weights when EMA is on), exact fp32 training state)."""
        from toolkit.lora_format import peft_to_comfy, peft_to_diffusers
        from toolkit.models.base_model import DTYPES
        from toolkit.network import lora_state_dict

        net, save = self.config.network, self.config.save
        training_state = lora_state_dict(self.model.transformer)
        with self._weights_context():
            published = lora_state_dict(self.model.transformer)
        dtype = DTYPES[save.dtype]
        if net.type == "lokr":
            from toolkit.lokr_format import lokr_peft_to_comfy, lokr_peft_to_diffusers

            convert = lokr_peft_to_diffusers if save.format == "diffusers" else lokr_peft_to_comfy
            return convert(published, net.adapter_alpha, net.adapter_rank, dtype=dtype), training_state
        if save.format == "diffusers":
            tensors = peft_to_diffusers(published, net.linear_alpha, net.linear, dtype=dtype)
        else:
            tensors = peft_to_comfy(published, net.linear_alpha, net.linear, self.model.arch, dtype=dtype)
        return tensors, training_state

    def metadata(self) -> dict[str, str]:
        cfg = self.config
        return {
            "format": "pt",
            "software": "flux-lora-toolkit",
            "arch": cfg.model.arch,
            "base_model": cfg.model.name_or_path,
            "step": str(self.step),
            "lora_format": cfg.save.format,
            "network_rank": str(cfg.network.adapter_rank),
            "network_alpha": str(cfg.network.adapter_alpha),
            "alpha_folded_into_weights": "true",  # both formats fold alpha/rank, so no .alpha keys are needed
            "trigger_word": cfg.trigger_word or "",
            "training_config": json.dumps(self.job.job_config.model_dump(mode="json")),
        }

    def save(self, final: bool = False) -> None:
        if getattr(self, "_pending_losses", None):
            self.read_losses()  # never save weights a non-finite loss has touched
        self.last_saved_step = self.step
        if not self.dist.is_main:
            return
        tensors, peft_state = self.lora_file_tensors()
        meta = self.metadata()
        state = {
            "step": self.step,
            "lora": peft_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "python_random": random.getstate(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "loader": self.loader_state,
            "reg_loader": self.reg_loader_state,
            "global_batch": self.config.train.batch_size * self.dist.world,
        }
        paths = ckpt.save_step(self.folder, self.name, self.step, tensors, meta, state, final)
        ckpt.prune(self.folder, self.name, max(self.config.save.max_step_saves_to_keep, 1))
        plot_loss(self.folder)
        for path in paths:
            self.progress.event("save", step=self.step, path=path)
        log.info("saved %s", ", ".join(paths))

    def cleanup(self) -> None:
        self.model = None
        self.cleanup_lock()
