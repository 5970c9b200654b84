"""Random-weight models of the real architectures, for tests, benchmarks and
``clip-train make-random-model``; the service never imports them.

No model hub is reachable from our machines, so every model a test or a benchmark serves is built here
and written in the layout the loader reads: ``clip`` (CLIP in every layout, tiny or ViT-B/32 sized),
``siglip`` (tiny SigLIP, or SigLIP 2 NaFlex) and ``multilingual`` (a sentence-transformers text model in
CLIP's space, for the ``reference-image-multilingual`` layout).
"""
