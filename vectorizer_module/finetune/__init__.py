"""Fine-tuning the two towers on image-caption pairs, with retrieval metrics before and after.

Modules, each with one job: ``data`` (read pairs, split, encode), ``loss`` (symmetric CLIP loss),
``optim`` (AdamW groups, warm-up + cosine schedule), ``metrics`` (text-to-image retrieval metrics),
``evaluate`` (embed an evaluation set and score it), ``export`` (write a Hugging Face CLIP directory),
``train`` (the training loop, checkpoints, the whole ``finetune`` run), ``synthetic`` (the seeded
shapes-and-colours data set), ``vocab`` (a word-level CLIP BPE tokenizer) and ``demo`` (the built-in
demonstration model). Only ``models`` and ``preprocessing`` are imported from the service.
"""
