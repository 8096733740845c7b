from .flux2_model import Flux2Klein4BModel, Flux2Klein9BModel, Flux2Model

__all__ = ["Flux2Model", "Flux2Klein4BModel", "Flux2Klein9BModel"]
