"""kvasir_ml.data."""
