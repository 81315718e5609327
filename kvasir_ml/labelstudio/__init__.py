"""kvasir_ml.labelstudio."""
