"""The Kubernetes side's one exception: kubernetes client exceptions stop at this package."""

from __future__ import annotations


class KubeError(Exception):
    """The API server failed or refused; the message names the call, never a credential."""
