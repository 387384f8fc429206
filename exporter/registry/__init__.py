"""OCI distribution client: challenge/token auth, paginated tag listing, manifest digests."""
