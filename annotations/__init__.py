"""Shipped in the wheel as ``kvasir_ml.resources.annotations`` (see ``kvasir_ml/resources``)."""
