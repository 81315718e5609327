"""kvasir_ml.evaluation."""
