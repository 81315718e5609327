"""kvasir_ml.models."""
