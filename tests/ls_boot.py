"""The session's Label Studio server, started in the background as soon as collection finds a
``labelstudio`` test, so its first-start migrations (~35-90 s on 2 cores) overlap the tests
that run before the Label Studio ones instead of adding to the suite's time."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import threading
from importlib.metadata import version
from pathlib import Path
from typing import Any

_BOOTS: dict[int, "LabelStudioBoot"] = {}


class LabelStudioBoot:
    """One server per pytest session: ``start`` (background thread), ``wait``, ``stop``."""

    def __init__(self, config: Any):
        self.data_root = Path(tempfile.mkdtemp(prefix="kvasir-ls-root-"))
        self._cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
        self.server = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def template(self) -> Path | None:
        """A migrated database kept in pytest's cache per Label Studio version (later starts take
        seconds); ``None`` without the cache plugin. Read only once Label Studio is known to exist."""
        if self._cache is None:
            return None
        return self._cache.mkdir(f"labelstudio-template-{version('label-studio')}") / "db"

    def start(self) -> None:
        if self._thread is not None:
            return
        from kvasir_ml.labelstudio.server import LabelStudioServer

        self.server = LabelStudioServer(self.data_root, template_dir=self.template)
        self._thread = threading.Thread(target=self._run, name="label-studio-boot", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.server.start()
        except BaseException as exc:  # handed to the first test that needs the server
            self._error = exc

    def wait(self):
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.server

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.join()
            if self.server is not None:
                self.server.stop()
        shutil.rmtree(self.data_root, ignore_errors=True)


def label_studio_boot(config: Any) -> LabelStudioBoot:
    """The session's boot object (created on first use)."""
    if id(config) not in _BOOTS:
        _BOOTS[id(config)] = LabelStudioBoot(config)
    return _BOOTS[id(config)]


def start_if_needed(session: Any) -> None:
    """Start the server in the background when a collected test is marked ``labelstudio``."""
    if importlib.util.find_spec("label_studio") is None:
        return
    if any(item.get_closest_marker("labelstudio") for item in session.items):
        label_studio_boot(session.config).start()


def stop_all() -> None:
    for boot in _BOOTS.values():
        boot.stop()
    _BOOTS.clear()
