"""Package layout that pyproject.toml alone cannot express.

``annotations/`` and ``configs/`` stay at the top of the repository and ship inside the
wheel as ``kvasir_ml.resources.annotations`` / ``kvasir_ml.resources.configs``, read with
``importlib.resources`` (see ``kvasir_ml/resources/__init__.py``). Everything else about the
package is in pyproject.toml.
"""

from setuptools import find_packages, setup

RESOURCES = {"kvasir_ml.resources.annotations": "annotations", "kvasir_ml.resources.configs": "configs"}

setup(
    packages=find_packages(include=["kvasir_ml", "kvasir_ml.*"]) + list(RESOURCES),
    package_dir=RESOURCES,
)
