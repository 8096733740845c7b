"""FLUX.2 family: declarations in `arch.py` (no torch), model classes in `flux2_model.py`."""
