"""Gradio app for training FLUX.1 / FLUX.2 LoRAs from a few images.

Not built yet: the app is issue 6 ("flux_train_ui.py: a Gradio app that trains
FLUX.1 and FLUX.2 LoRAs"). Until then, write a YAML job (see config/examples/)
and run it with `python run.py CONFIG`.
"""

import sys

if __name__ == "__main__":
    sys.exit("flux_train_ui.py is not implemented yet (issue 6); use `python run.py CONFIG` meanwhile.")
