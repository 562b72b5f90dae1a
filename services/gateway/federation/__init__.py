"""Federation: partnerships between communities on different deployments (docs/federation.md)."""
