"""Python helpers on top of weaviate-client v4 for collections vectorised by clip-vectorizer.

- :mod:`plugin_api.stack` — run our service and a real ``weaviate-server`` on loopback
- :mod:`plugin_api.schema` — multi2vec-clip config that Weaviate applies as meant (field order, weights)
- :mod:`plugin_api.importer` — resumable batched import with a per-object report
- :mod:`plugin_api.search` — near_text / near_image / hybrid as plain dataclasses
- :mod:`plugin_api.cli` — the ``clip-weaviate`` command

Import the submodules directly; this package imports nothing heavy on its own.
"""
