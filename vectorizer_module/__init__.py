"""clip-vectorizer: a CLIP inference service that speaks Weaviate's multi2vec-clip protocol."""

__version__ = "0.1.0"
