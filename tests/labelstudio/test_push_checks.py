"""Push refuses what would leave annotators with broken pages."""

from __future__ import annotations

import pytest

from kvasir_ml.labelstudio.client import LabelStudioError
from kvasir_ml.labelstudio.sync import find_project, push_dataset

pytestmark = pytest.mark.labelstudio


def test_push_with_a_data_root_other_than_the_servers_fails_clearly(ls_client, ls_data_root, tiny_dataset):
    # Images under <server root>/nested/wrongroot/...; pushed with data root <server root>/nested,
    # so the task URLs say ?d=wrongroot/... which the server resolves under its own root: 404.
    nested = ls_data_root / "nested"
    ds = tiny_dataset(nested, "wrongroot", n=2)
    with pytest.raises(LabelStudioError) as err:
        push_dataset(ls_client, ds, nested, "wrong root")
    msg = str(err.value)
    assert "HTTP 404" in msg and str(nested) in msg and "--data-root" in msg and "No tasks were created" in msg
    assert find_project(ls_client, "wrong root") is None  # the project this push created is deleted again
    # The same images pushed with the server's own root are served.
    ds_ok = tiny_dataset(ls_data_root, "rightroot", n=2)
    assert push_dataset(ls_client, ds_ok, ls_data_root, "right root").n_tasks_created == 2
