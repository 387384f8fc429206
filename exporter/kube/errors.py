"""The Kubernetes side's one exception: kubernetes client exceptions stop at this package."""

from __future__ import annotations

from exporter.model import printable


class KubeError(Exception):
    """The API server failed or refused; the message names the call, never a credential."""


def config_reason(exc: BaseException) -> str:
    """The first line of a configuration error, short and printable: the kubeconfig
    loader's messages name files and keys, never credentials."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not text:
        return type(exc).__name__
    shown = printable(text)
    return shown if len(shown) <= 200 else shown[:200] + "…"
