"""Canonical OpenAPI 3.0.3 documents, one per API area."""
