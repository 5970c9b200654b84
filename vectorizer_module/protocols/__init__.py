"""The wire formats, one module each: ``multi2vec_clip`` (Weaviate's multi2vec-clip, ``/vectorize``),
``openai`` (``/v1/embeddings``), ``vectors`` (Weaviate's ``/vectors`` modules); ``common`` holds what
they share (JSON in and out, base64 images, the Unicode and finite-value checks); ``owners`` which of them
owns a path, and so how an error there is shaped."""
