"""`type: to_folder`: generate one image per prompt into `output_folder`.

Every prompt, size and reference image is checked before the model loads. Settings
come from, in order: the prompt's flags (--w --h --seed --cfg --steps --n --m), the
`generate:` section, the architecture's defaults. `generate.ctrl_img` gives FLUX.2
edit models their reference images (the same for every prompt), as `sample.ctrl_img`
does while training.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from tqdm import tqdm

from jobs.process.BaseProcess import BaseProcess
from toolkit.errors import ToolkitError
from toolkit.prompt import PromptError, parse_prompt

log = logging.getLogger(__name__)


class GenerateConfigError(ToolkitError, ValueError):
    pass


class GenerateProcess(BaseProcess):
    def __init__(self, index, job, config):
        super().__init__(index, job, config)
        self.model = None

    def _prompts(self) -> list[str]:
        gen = self.config.generate
        prompts = list(gen.prompts)
        if gen.prompt_file:
            path = Path(gen.prompt_file).expanduser()
            if not path.is_file():
                raise GenerateConfigError(f"{self.key}.generate.prompt_file: '{path}' does not exist")
            prompts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        return prompts

    def plan(self, model_cls):
        """Parse prompts and resolve sizes against the model class: errors before any load."""
        from toolkit.data.references import unreadable_images
        from toolkit.features import too_many_references
        from toolkit.models.base_model import ImageRequest, unsupported_model_options

        gen = self.config.generate
        caps = model_cls.capabilities
        div = caps.bucket_divisibility
        problems, specs = unsupported_model_options(self.config.model, f"{self.key}.model"), []
        problems += model_cls.weights_problems(self.config.model, f"{self.key}.model")
        if gen.ctrl_imgs:
            key = f"{self.key}.generate.ctrl_img"
            if not caps.reference_training:
                problems.append(f"{key}: {model_cls.arch} does not take reference images (FLUX.2 models do); remove it")
            else:
                problems += too_many_references(model_cls, len(gen.ctrl_imgs), key)
            problems += [f"{key}: {problem}" for problem in unreadable_images(gen.ctrl_imgs)]
        for i, text in enumerate(self._prompts()):
            try:
                specs.append(parse_prompt(text))
            except PromptError as exc:
                problems.append(f"{self.key}.generate.prompts[{i}]: {exc}")
        for spec in specs:
            for side, value in (("width", spec.width or gen.width), ("height", spec.height or gen.height)):
                if value % div:
                    problems.append(
                        f"{self.key}.generate: {side} {value} for {spec.prompt!r} is not a multiple of {div} "
                        f"({model_cls.arch} needs it); use {value // div * div} or {(value // div + 1) * div}"
                    )
        if problems:
            raise GenerateConfigError("\n".join(problems))
        return specs, ImageRequest

    def preflight(self) -> None:
        """Every check :meth:`run` makes before loading (a multi-process job runs these for every process first)."""
        from toolkit.util.device import resolve_device
        from toolkit.util.get_model import get_model_class

        self.plan(get_model_class(self.config.model))
        resolve_device(self.config.device, f"{self.key}.device")

    def run(self) -> None:
        from toolkit.util.device import resolve_device
        from toolkit.util.get_model import get_model_class

        cfg = self.config
        model_cls = get_model_class(cfg.model)
        specs, request_cls = self.plan(model_cls)
        device = resolve_device(cfg.device, f"{self.key}.device")
        out_dir = Path(cfg.output_folder).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)

        self.model = model_cls(cfg.model, device=device)
        self.model.load_model()
        gen = cfg.generate
        defaults = {"neg": gen.neg, "width": gen.width, "height": gen.height, "network_multiplier": 1.0,
                    "ctrl_img": tuple(gen.ctrl_imgs)}
        defaults.update(self.model.sample_defaults())
        if gen.guidance_scale is not None:
            defaults["guidance_scale"] = gen.guidance_scale
        if gen.sample_steps is not None:
            defaults["sample_steps"] = gen.sample_steps
        ext = gen.ext.lstrip(".")
        for i, spec in enumerate(tqdm(specs, desc=f"generating ({self.job.name})", unit="img")):
            seed = gen.seed if gen.seed >= 0 else random.randint(0, 2**31 - 1)
            request = request_cls.from_spec(spec, {**defaults, "seed": seed})
            image = self.model.generate_images([request])[0]
            stem = f"{i:04d}_{request.seed}"
            image.save(out_dir / f"{stem}.{ext}")
            (out_dir / f"{stem}.json").write_text(json.dumps({"arch": model_cls.arch, **request.__dict__}, indent=2))
        log.info("wrote %d image(s) to %s", len(specs), out_dir)

    def cleanup(self) -> None:
        self.model = None
