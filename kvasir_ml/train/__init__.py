"""kvasir_ml.train."""
