"""kvasir_ml.detection."""
