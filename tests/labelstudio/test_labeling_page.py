"""The labeling page in a real browser: headless Chromium against a real Label Studio.

Runs ``scripts/screenshot_labeling.py``: image and every control inside a 1600x1000 window
(and at 1366x768 an image at least 400 px wide),
the prediction pre-fills the page, the mnemonic hotkeys work, and Submit without an inset
state is refused. Slow (a second server and a browser); skipped without Debian's ``chromium``
or ``websocket-client``, so the default suite never depends on a browser.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from ls_boot import label_studio_boot

pytestmark = [pytest.mark.slow, pytest.mark.labelstudio,
              pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
              pytest.mark.skipif(importlib.util.find_spec("websocket") is None, reason="websocket-client missing")]

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_labeling_page_layout_hotkeys_and_required_inset(ls_server, request, tmp_path):
    sys.path.insert(0, str(SCRIPTS))
    try:
        import screenshot_labeling
    finally:
        sys.path.remove(str(SCRIPTS))
    template = label_studio_boot(request.config).template
    result = screenshot_labeling.run(tmp_path / "page.png", 1600, 1000, shutil.which("chromium"), template)
    assert result["checks"] == {k: True for k in result["checks"]}, result
    assert result["lowest_control_px"] <= 1000 and result["png_kb"] < 300

    # A 1366x768 laptop: the panel narrows (hints hidden) so the image takes the width it frees
    # (it was 295 px beside the 430 px panel, Label Studio's task list and its side panel).
    small = screenshot_labeling.run(tmp_path / "small.png", 1366, 768, shutil.which("chromium"), template)
    assert small["image_px"][0] >= 400 and small["checks"]["page_does_not_scroll"], small
