"""What the two UIs (the Gradio app `flux_train_ui.py` and the Next.js job UI in `ui/`) share, in Python.

schema   the config schema, presets and architectures as JSON; `validate` (the one validation path)
presets  the one preset -> job-config builder (`python -m toolkit.ui.presets build` for the Next.js server)
jobs     checking, claiming, starting, stopping and listing UI jobs (one job folder each)
datasets dataset folders, uploads and their reference images
guard    every path a UI-submitted job names confined to the UI's data roots; no ${ENV}
http     the Gradio app's front door: Host / Origin checks, the optional token, upload size caps
samples  gallery captions as the trainer uses the prompts

Nothing here imports torch: the UIs call these as short-lived processes.
"""
