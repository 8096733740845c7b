"""Built-in diffusion model classes (one folder per architecture family)."""

from .flux2 import Flux2Klein4BModel, Flux2Klein9BModel, Flux2Model

AI_TOOLKIT_MODELS = [Flux2Model, Flux2Klein4BModel, Flux2Klein9BModel]
