"""`type: to_folder`: generate one image per prompt into `output_folder`.

Every prompt, size and reference image is checked before the model loads (toolkit/validate.py). Settings
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
from toolkit.errors import ConfigError

log = logging.getLogger(__name__)


class GenerateProcess(BaseProcess):
    def __init__(self, index, job, config):
        super().__init__(index, job, config)
        self.model = None

    def plan(self):
        """Prompts, sizes, reference images and the device, checked before any load (toolkit/validate.py)."""
        from toolkit.validate import plan_generate

        checked = self.job.plans[self.index] if self.job.plans else None
        if checked is None:
            problems, checked = plan_generate(self.config, self.key)
            if problems:
                raise ConfigError(problems)
        return checked

    def run(self) -> None:
        from toolkit.arch_registry import model_class
        from toolkit.models.base_model import ImageRequest

        cfg = self.config
        checked = self.plan()
        model_cls, specs, device, request_cls = (
            model_class(checked.spec),
            checked.prompt_specs,
            checked.device,
            ImageRequest,
        )
        out_dir = Path(cfg.output_folder).expanduser()
        out_dir.mkdir(parents=True, exist_ok=True)

        self.model = model_cls(cfg.model, device=device)
        self.model.load_model()
        gen = cfg.generate
        defaults = {
            "neg": gen.neg,
            "width": gen.width,
            "height": gen.height,
            "network_multiplier": 1.0,
            "ctrl_img": tuple(gen.ctrl_imgs),
        }
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
