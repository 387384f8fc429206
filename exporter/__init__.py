"""flux-oci-trigger: Flux applies new OCI artifacts now, and shows how far behind each source is."""

__version__ = "0.1.0"
