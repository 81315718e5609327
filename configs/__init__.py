"""Shipped in the wheel as ``kvasir_ml.resources.configs`` (see ``kvasir_ml/resources``)."""
