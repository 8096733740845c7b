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

import torch
import yaml
from tqdm import tqdm

from jobs.process.BaseProcess import BaseProcess
from toolkit import checkpoint as ckpt
from toolkit.errors import ToolkitError
from toolkit.progress import ProgressLog, plot_loss

log = logging.getLogger(__name__)


class TrainingError(ToolkitError):
    pass


class BaseSDTrainProcess(BaseProcess):
    def __init__(self, index, job, config):
        super().__init__(index, job, config)
        self.name = job.name
        self.folder = Path(config.training_folder).expanduser() / self.name
        self.progress = ProgressLog(self.folder)
        self.model = None
        self.step = 0
        self.params: list[torch.nn.Parameter] = []
        self.ema = None
        self.loader_state = self.reg_loader_state = None
        self.item_multiplier = None
        self.last_saved_step = -1
        self.sample_requests = []
        self.dist = None
        self.stop_requested = False

    # ================================================================== setup
    def plan(self):
        """Everything checkable before weights load: model class, prompts, datasets, folder, device."""
        from toolkit.data.dataset import build_items
        from toolkit.distributed import Distributed
        from toolkit.util.device import resolve_device
        from toolkit.util.get_model import get_model_class

        cfg = self.config
        self.dist = Distributed()
        self.progress.enabled = self.dist.is_main
        self.model_cls = get_model_class(cfg.model)
        self._check_supported()
        self.sample_specs = self._parse_sample_prompts()
        keys = [f"{self.key}.datasets[{i}]" for i in range(len(cfg.datasets))]
        caps = self.model_cls.capabilities
        self.items = build_items(cfg.datasets, cfg.trigger_word, caps.bucket_divisibility, keys,
                                 reference_max_pixels=caps.reference_max_pixels)
        self.device = resolve_device(cfg.device, f"{self.key}.device")
        if self.dist.enabled:
            # accelerate assigned this process its own device (cuda:<local rank>, or the CPU with gloo)
            self.device = self.dist.device
        effective = cfg.train.batch_size * self.dist.world * cfg.train.gradient_accumulation_steps
        log.info("process %d of %d on %s; effective batch size %d (batch_size %d x %d process(es) x %d accumulation)",
                 self.dist.rank, self.dist.world, self.device, effective, cfg.train.batch_size, self.dist.world,
                 cfg.train.gradient_accumulation_steps)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise TrainingError(f"{self.key}.training_folder: cannot write to '{self.folder}': {exc}") from exc
        log.info("%d training items from %d dataset(s)", len(self.items), len(cfg.datasets))

    def _check_supported(self) -> None:
        """Options this trainer or the architecture cannot honour: an error, never silently ignored."""
        from toolkit.features import check_features
        from toolkit.models.base_model import unsupported_model_options
        from toolkit.optim import check_optimizer
        from toolkit.util.get_model import model_registry

        cfg = self.config
        problems = unsupported_model_options(cfg.model, f"{self.key}.model")
        problems += check_features(cfg, self.model_cls, model_registry(), self.key)
        if cfg.model.lora_path:
            problems.append(f"{self.key}.model.lora_path applies a LoRA when generating; it cannot be merged into a "
                            "training run yet. Remove it")
        if self.dist.shards_model:
            problems += self._fsdp_problems()
        if not cfg.train.train_unet:
            problems.append(f"{self.key}.train.train_unet: false would train nothing; set it to true")
        from toolkit.train.checks import training_problems

        problems += training_problems(cfg, self.key)
        try:
            check_optimizer(cfg.train.optimizer)
        except ToolkitError as exc:
            problems.append(f"{self.key}.train.optimizer: {exc}")
        if problems:
            raise TrainingError("\n".join(problems))

    def _fsdp_problems(self) -> list[str]:
        """Options that cannot be combined with sharding the transformer across processes (FSDP)."""
        model, key = self.config.model, f"{self.key}.model"
        share = f"FSDP already splits the transformer across the {self.dist.world} processes (1/{self.dist.world} each)"
        problems = []
        if model.quantize:
            problems.append(f"{key}.quantize: quantized (optimum-quanto) weights cannot be sharded by FSDP; set "
                            f"quantize: false ({share}) or train without the FSDP accelerate config")
        if model.layer_offloading or model.vram_budget_gb is not None:
            option = "layer_offloading" if model.layer_offloading else "vram_budget_gb"
            problems.append(f"{key}.{option}: layer offloading cannot stream FSDP-sharded blocks; remove it "
                            f"({share})")
        return problems

    def _parse_sample_prompts(self):
        from toolkit.data.references import unreadable_images
        from toolkit.prompt import PromptError, apply_trigger, parse_prompt

        problems, specs = [], []
        sample = self.config.sample
        for i, item in enumerate(sample.sample_items()):
            try:
                specs.append((item, parse_prompt(apply_trigger(item.prompt, self.config.trigger_word))))
            except PromptError as exc:
                problems.append(f"{self.key}.sample.prompts[{i}]: {exc}")
            own = sample.samples is not None and sample.samples[i].ctrl_img is not None
            where = f"{self.key}.sample." + (f"samples[{i}].ctrl_img" if own else "ctrl_img")
            problems += [f"{where}: {problem}" for problem in unreadable_images(item.ctrl_imgs)]
        problems = list(dict.fromkeys(problems))  # a shared sample.ctrl_img is reported once
        if problems:
            raise TrainingError("\n".join(problems))
        return specs

    def setup(self) -> None:
        cfg = self.config
        if cfg.logging.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        self.plan()
        # The LoRA's initial A matrices come from torch's global RNG: seed it so runs repeat.
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        self._write_resolved_config()
        self.model = self.model_cls(cfg.model, device=self.device)
        self.model.adapter_type = cfg.network.type
        self.model.shard_transformer = self.dist.shards_model  # FSDP: it stays on the CPU until sharded
        from toolkit.models.offload_plan import TrainingShape

        shape = TrainingShape.from_process_config(cfg, self.model_cls.capabilities.reference_max_pixels)
        self.model.set_training_shape(shape)  # sizes the offload plan
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
            base = {"neg": item.neg, "width": item.width, "height": item.height, "seed": item.seed,
                    "guidance_scale": item.guidance_scale, "sample_steps": item.sample_steps,
                    "network_multiplier": item.network_multiplier, "ctrl_img": tuple(item.ctrl_imgs)}
            base = {**defaults, **{k: v for k, v in base.items() if v is not None}}
            self.sample_requests.append(ImageRequest.from_spec(spec, base))

    def _prepare_data(self) -> None:
        from toolkit.data.dataset import caption_variants, make_dataloader
        from toolkit.data.latent_cache import LatentCache, TextEmbeddingCache
        from toolkit.data.references import load_reference
        from toolkit.train.preservation import Preservation

        cfg, model = self.config, self.model
        self.preservation = Preservation(cfg.train)
        self.latent_cache = self.reference_cache = None
        references = list(dict.fromkeys(ref for item in self.items for ref in item.references))
        vae_id = model.vae_id() if references or any(item.latents_cached for item in self.items) else None
        if any(item.latents_cached for item in self.items):
            self.latent_cache = LatentCache(model.encode_images, vae_id=vae_id, show_progress=self.dist.is_main)
            self._fill_cache(self.latent_cache, self.items)
        if references:  # always cached: encoded once, never per step
            self.reference_cache = LatentCache(model.encode_images, vae_id=vae_id, load_image=load_reference,
                                               show_progress=self.dist.is_main, desc="Caching reference latents")
            self._fill_cache(self.reference_cache, references)
        self.text_cache = None
        if cfg.caches_text_embeddings or cfg.train.unload_text_encoder:
            self.text_cache = TextEmbeddingCache(model.encode_prompt)
            self.text_cache.fill(caption_variants(self.items) + self.preservation.cache_texts(self.items)
                                 + self.extra_captions())
            texts = [t for request in self.sample_requests for t in model.sampling_texts(request)]
            model.cache_prompts(texts)
            self.text_cache.release_encoder()
            # unload_text_encoder drops it; cache_text_embeddings parks it on the CPU.
            model.unload_text_encoders(keep_on_cpu=not cfg.train.unload_text_encoder)
            log.info("text embeddings cached (%d captions); text encoder %s", len(self.text_cache),
                     "unloaded" if cfg.train.unload_text_encoder else "moved to CPU")
        # With every latent cached the VAE is only needed to decode samples: park it on the CPU meanwhile.
        self.vae_parked = self.latent_cache is not None and all(item.latents_cached for item in self.items)
        if self.vae_parked:
            model.vae.to("cpu")
        # Every process walks the same global batches (batch_size x processes) and keeps its shard.
        global_batch = cfg.train.batch_size * self.dist.world
        first = cfg.datasets[0]  # ai-toolkit: the first dataset's worker settings load every dataset

        def loader(items):
            return make_dataloader(items, global_batch, cfg.train.seed, latent_cache=self.latent_cache,
                                   reference_cache=self.reference_cache, num_workers=first.num_workers,
                                   prefetch_factor=first.prefetch_factor) if items else None

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
        from toolkit.network import attach_lora, select_targets

        net = self.config.network
        transformer = self.model.transformer
        targets = select_targets(self.model.lora_targets(), net.network_kwargs.only_if_contains,
                                 net.network_kwargs.ignore_if_contains, f"{self.key}.network")
        self.params = attach_lora(transformer, targets, net.linear, net.linear_alpha, net.type, net.lokr_factor)
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
        log.info("%s rank %d alpha %g on %d modules: %.2fM parameters", net.type, net.linear, net.linear_alpha,
                 len(targets), count / 1e6)

    def _prepare_optimizer(self) -> None:
        from toolkit.ema import build_ema
        from toolkit.optim import build_optimizer, build_scheduler

        train = self.config.train
        self.optimizer = build_optimizer(train.optimizer, self.params, train.lr, train.optimizer_params)
        self.scheduler = build_scheduler(train.lr_scheduler, self.optimizer, train.steps, train.lr_warmup_steps)
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
        log.warning("this checkpoint was trained with global batches of %d (batch_size x processes) and this run uses "
                    "%d (%d process(es)): the effective batch size changes and the data order restarts at epoch %d",
                    saved, current, self.dist.world, position["epoch"] + (1 if position["batch"] else 0))
        if position["batch"] == 0:
            return position
        return {**position, "epoch": position["epoch"] + 1, "batch": 0}

    # ================================================================== loop
    def run(self) -> None:
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
            log.info("already trained to step %d of %d; nothing to do (raise train.steps to continue)", self.step, total)
            return
        from toolkit.train.reporter import Reporter

        self.reporter = Reporter(self.config, self.progress, self.name, self.job.job_config.model_dump(mode="json"),
                                 self.device)
        timed, first_step = self.reporter.timer.section, self.step + 1
        if self.step == 0 and not train.skip_first_sample and not train.disable_sampling:
            self.sample()
        batches = self._batches()
        bar = tqdm(total=total, initial=self.step, desc=self.name, unit="step", dynamic_ncols=True,
                   disable=not self.dist.is_main)
        while self.step < total:
            if self.dist.any(self.stop_requested):
                self.stop_requested = True
                break
            started = time.perf_counter()
            loss = self.train_step(batches)
            self.step += 1
            lr = self.scheduler.get_last_lr()[0]
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            with timed("validation"):
                self.after_step(first_step)
            self.reporter.step(self.step, total, loss, lr, time.perf_counter() - started)
            if self.step < total and self.step % self.config.save.save_every == 0:
                with timed("saving"):
                    self.save()
            if (self.step < total and not train.disable_sampling and self.step >= sample.sample_start_step
                    and self.step % sample.sample_every == 0):
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

        return TrainingBatches(self.config, self.dist, self.loader, self.reg_loader, self.loader_state,
                               self.reg_loader_state)

    def train_step(self, batches) -> float:
        """One optimizer step over `gradient_accumulation_steps` batches; returns the mean loss."""
        train = self.config.train
        accumulation = train.gradient_accumulation_steps
        losses = []
        for _ in range(accumulation):
            timed = self.reporter.timer.section
            with timed("data"):
                shard, lo, hi, size = batches.next(self.step + 1)
                self.loader_state, self.reg_loader_state = batches.states
            # The shard's mean loss weighted by its share: summed over processes, the global batch mean.
            with timed("forward"):
                loss = self.compute_loss(shard, lo, hi, size) * ((hi - lo) / size)
            global_loss = self.dist.sum_scalar(loss.item())
            if not math.isfinite(global_loss):
                raise TrainingError(
                    f"loss is {global_loss} at step {self.step + 1}; stopping before it overwrites a checkpoint "
                    f"(last good save: step {max(self.last_saved_step, 0)}). Lower train.lr or check the data"
                )
            # Even an empty shard (weight 0) runs backward: a sharded (FSDP) model needs every process in it.
            with timed("backward"):
                (loss / accumulation).backward()
            losses.append(global_loss)
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
        return sum(losses) / len(losses)

    def compute_loss(self, batch, lo: int, hi: int, size: int) -> torch.Tensor:
        """Mean loss of `batch`, this process's items [lo, hi) of a global batch of `size`.

        Random draws (noise, timesteps) are made for the whole global batch and sliced, so the
        result does not depend on how many processes share the batch.
        """
        raise NotImplementedError

    # ================================================================== conditioning
    def batch_latents(self, batch) -> torch.Tensor:
        if batch.latents is not None:
            return batch.latents.to(self.device)
        with torch.no_grad():
            return self.model.encode_images(batch.images)

    def batch_references(self, batch) -> list[torch.Tensor] | None:
        """The batch's cached reference latents on the device: one (B, C, h_i, w_i) per reference, or None."""
        if batch.references is None:
            return None
        return [ref.to(self.device) for ref in batch.references]

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
        if getattr(self, "vae_parked", False):
            self.model.vae.to(self.device)
        with self._weights_context():
            for i, request in enumerate(tqdm(self.sample_requests, desc="sampling", unit="img", leave=False,
                                             disable=not self.dist.is_main)):
                image = self.model.generate_images([request])[0]
                if not self.dist.is_main:
                    continue
                path = folder / f"{self.step:09d}_{i}.{fmt}"
                ckpt.atomic_write(path, lambda tmp: image.save(tmp, format="JPEG" if fmt == "jpg" else fmt.upper()))
                paths.append(str(path.relative_to(self.folder)))
        if getattr(self, "vae_parked", False):
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
            return convert(published, net.linear_alpha, net.linear, dtype=dtype), training_state
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
            "network_rank": str(cfg.network.linear),
            "network_alpha": str(cfg.network.linear_alpha),
            "alpha_folded_into_weights": "true",  # both formats fold alpha/rank, so no .alpha keys are needed
            "trigger_word": cfg.trigger_word or "",
            "training_config": json.dumps(self.job.job_config.model_dump(mode="json")),
        }

    def save(self, final: bool = False) -> None:
        self.last_saved_step = self.step
        if not self.dist.is_main:
            return
        tensors, peft_state = self.lora_file_tensors()
        meta = self.metadata()
        step_path = ckpt.step_file(self.folder, self.name, self.step)
        state = {
            "step": self.step, "lora": peft_state, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "generator": self.generator.get_state(),
            "python_random": random.getstate(), "ema": self.ema.state_dict() if self.ema is not None else None,
            "loader": self.loader_state, "reg_loader": self.reg_loader_state,
            "global_batch": self.config.train.batch_size * self.dist.world,
        }
        # LoRA first, state last: a step counts as saved (for resume) only once both exist.
        ckpt.save_safetensors(step_path, tensors, meta)
        ckpt.save_state(ckpt.step_file(self.folder, self.name, self.step, ".state.pt"), state)
        paths = [step_path.name]
        if final:
            final_path = self.folder / f"{self.name}.safetensors"
            ckpt.save_safetensors(final_path, tensors, meta)
            paths.append(final_path.name)
        ckpt.prune(self.folder, self.name, max(self.config.save.max_step_saves_to_keep, 1))
        plot_loss(self.folder)
        for path in paths:
            self.progress.event("save", step=self.step, path=path)
        log.info("saved %s", ", ".join(paths))

    def cleanup(self) -> None:
        self.model = None

