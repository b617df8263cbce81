import pytest
import torch

from focalcal.losses import (
    BrierLoss,
    CrossEntropyLoss,
    DualFocalLoss,
    FocalLoss,
    LabelSmoothingLoss,
    MarginLabelSmoothingLoss,
    MMCELoss,
    SampleDependentFocalLoss,
    ScheduledFocalLoss,
    build_loss,
    loss_names,
)


@pytest.mark.parametrize(
    ("name", "cls", "attributes"),
    [
        ("ce", CrossEntropyLoss, {"label_smoothing": 0.0}),
        ("brier", BrierLoss, {}),
        ("mmce", MMCELoss, {"weighted": False, "lam": 2.0}),
        ("mmce-weighted", MMCELoss, {"weighted": True, "lam": 2.0}),
        ("ls-0.05", LabelSmoothingLoss, {"label_smoothing": 0.05}),
        ("fl-3", FocalLoss, {"gamma": 3.0}),
        ("FL-0.5", FocalLoss, {"gamma": 0.5}),
        ("flsd-53", SampleDependentFocalLoss, {"thresholds": (0.2,), "gammas": (5.0, 3.0)}),
        (
            "flsd-532",
            SampleDependentFocalLoss,
            {"thresholds": (0.2, 0.5), "gammas": (5.0, 3.0, 2.0)},
        ),
        ("flsc-531", ScheduledFocalLoss, {"gammas": (5.0, 3.0, 1.0), "gamma": 5.0}),
        ("fl-1e-3", FocalLoss, {"gamma": 0.001}),
        ("dual-focal-5", DualFocalLoss, {"gamma": 5.0}),
        ("Dual-Focal-0.5", DualFocalLoss, {"gamma": 0.5}),
        ("mbls", MarginLabelSmoothingLoss, {"margin": 10.0, "alpha": 0.1}),
    ],
)
def test_names_build_the_paper_losses(name, cls, attributes):
    criterion = build_loss(name)
    assert type(criterion) is cls
    for attribute, value in attributes.items():
        assert getattr(criterion, attribute) == value


def test_keywords_reach_the_constructor():
    weight = torch.ones(3)
    criterion = build_loss("flsd-53", weight=weight, ignore_index=1, reduction="sum")
    assert criterion.reduction == "sum" and criterion.ignore_index == 1
    assert criterion.weight is weight


def test_successors_are_listed_and_take_their_options():
    names = loss_names()
    assert "dual-focal-<x>" in names and "mbls" in names
    criterion = build_loss("mbls", margin=6.0, alpha=0.2, reduction="sum")
    assert (criterion.margin, criterion.alpha, criterion.reduction) == (6.0, 0.2, "sum")


def test_every_listed_name_builds():
    for name in loss_names():
        build_loss(name.replace("<x>", "0.1"))


@pytest.mark.parametrize(
    "name", ["focal", "fl", "flsd-54", "", "ls", "dual-focal", "dual-5", "focal-5", "mbls-1"]
)
def test_unknown_name_lists_the_valid_ones(name):
    with pytest.raises(ValueError, match="ce, brier, mmce, mmce-weighted, flsd-53") as error:
        build_loss(name)
    assert f"unknown loss {name!r}" in str(error.value)


@pytest.mark.parametrize("name", ["fl-abc", "ls-x", "fl-1e", "dual-focal-x", "dual-focal-5-3"])
def test_parametric_name_with_a_bad_number(name):
    with pytest.raises(ValueError, match="is not a number"):
        build_loss(name)
