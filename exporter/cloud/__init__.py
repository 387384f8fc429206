"""I/O: registry credentials from cloud workload identity (``spec.provider`` aws, azure,
gcp), exchanged as Flux's controllers exchange them, with plain HTTP calls (no cloud SDK).
"""
