"""Pure ML for the consortium: as-of features, the Lightning model, metrics, weight vectors."""
