"""kvasir_ml: multi-label classification, detection and annotation round trips for GI endoscopy."""

__version__ = "0.1.0"
