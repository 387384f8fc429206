"""The front door of every port the exporter opens: ``door`` (one socket loop with
per-port limits, a few workers) and ``wire`` (request heads in, answers out)."""
