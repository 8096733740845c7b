"""The training data pipeline: folders -> items -> buckets -> batches, plus latent and text caches.

Model-agnostic by construction: nothing here imports a model class or reads an
architecture name. What depends on the model arrives as arguments: the bucket
``divisibility`` (``model.capabilities.bucket_divisibility``), the VAE fingerprint
``vae_id``, and the ``encode_images`` / ``encode_prompt`` callables.

Modules:
- :mod:`toolkit.data.captions`: caption maths (pure, seeded ``random.Random``, no torch)
- :mod:`toolkit.data.buckets`: aspect-ratio buckets and the bucket batch sampler (no torch)
- :mod:`toolkit.data.images`: image files (scan facts, RGB pixels, ``open_rgb``), no torch at import
- :mod:`toolkit.data.items`: folder scanning and training items (no torch: config validation runs it)
- :mod:`toolkit.data.references`: reference (edit) images of ``control_path`` paired with the targets
- :mod:`toolkit.data.dataset`: image loading, the torch Dataset, batches and the DataLoader
- :mod:`toolkit.data.latent_cache`: ``LatentCache`` (memory / disk) and ``TextEmbeddingCache``

This package's ``__init__`` imports nothing so that the torch-free modules stay cheap. Imports go one
way: images <- references <- items <- dataset <- latent_cache; nothing here imports toolkit.models (a
test checks the import graph).
"""
