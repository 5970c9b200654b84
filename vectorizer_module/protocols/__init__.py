"""Wire formats besides multi2vec-clip's (``protocol``): OpenAI embeddings, Weaviate's /vectors modules."""
