"""Making and training models for clip-vectorizer, apart from the service (``clip-train``).

The service (``vectorizer_module``) never imports this package; this package builds on the service's
model code (``models``, ``preprocessing``), so it trains exactly the towers that serve.

- training: ``data`` (read pairs, split, encode), ``loss`` (symmetric CLIP loss), ``optim`` (AdamW
  groups, warm-up + cosine schedule), ``freezing`` (which parameters train), ``metrics`` and
  ``evaluate`` (text-to-image retrieval), ``export`` (a Hugging Face CLIP directory), ``train`` (the
  loop, checkpoints, the whole ``finetune`` run);
- the shapes data set (``shapes/``), the word-level tokenizer (``vocab``), the built-in demo model's
  recipe (``demo``) and its scoring on fresh draws (``draws``);
- ``random_models/``: random-weight models of the real architectures for tests and benchmarks.
"""
