"""Built-in diffusion model architectures (one folder per family).

Only the declarations are imported here (plain data, no torch): the model classes load when a
model is built (`toolkit.arch.model_class`).
"""

from .flux2.arch import ARCHS

AI_TOOLKIT_ARCHS = list(ARCHS)
