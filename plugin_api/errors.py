"""Errors of the plugin API. The CLI shows each as one line, never as a traceback."""

from __future__ import annotations


class PluginError(Exception):
    """Base class of every error this package raises on purpose."""


class FieldConfigError(PluginError, ValueError):
    """A multi2vec-clip field/weight configuration that Weaviate would reject or mis-apply."""


class WeaviateBinaryNotFound(PluginError):
    """No ``weaviate-server`` binary where we looked."""


class StackError(PluginError):
    """A process of the local stack exited or did not become ready; the message ends with its log tail."""


class UsageError(PluginError):
    """The command line names something that is not there or cannot work (the CLI exits 2)."""


class NotReachable(PluginError):
    """Weaviate (or the inference service behind it) did not answer, or was not ready in time."""


class SearchFailed(PluginError):
    """Weaviate refused or failed a query; the message is Weaviate's (it quotes the inference service)."""
