import pytest

from focalcal.losses import _focal_paths


@pytest.fixture(params=["numpy path", "torch path"])
def focal_path(request, monkeypatch):
    """Runs a test on each of the focal losses' two paths (focalcal/losses/_focal_paths.py):
    as they are (small 2-D CPU logits take NumPy's), then with every input on torch's."""
    if request.param == "torch path":
        monkeypatch.setattr(_focal_paths, "SMALL", 0)
    return request.param
