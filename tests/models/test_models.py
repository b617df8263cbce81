"""Every image and 1-D model: shapes, gradients, parameter counts, layouts, argument errors."""

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from focalcal.models import ThreeStageResNet, WideResNet, build_model, model_names

# name -> (num_classes, in_channels, image_size, spatial dimensions) of a quick input; the deep
# nets take any image size and 8×8 keeps their passes fast, but the Tiny-ImageNet net needs 16×16
# for a 2×2 map before its linear layer, whose channels_last order must survive the flatten
SPECS = {
    "resnet50": (10, 3, 8, 2),
    "resnet110": (10, 3, 8, 2),
    "wrn-26-10": (10, 3, 8, 2),
    "densenet121": (10, 3, 8, 2),
    "resnet50-tiny": (200, 3, 16, 2),
    "resnet8": (10, 1, 28, 2),
    "resnet20": (10, 3, 8, 2),
    "small-cnn": (10, 1, 28, 2),
    "cnn1d": (10, 1, 40, 1),
}
IMAGE_MODELS = [name for name, spec in SPECS.items() if spec[3] == 2]


def build(name: str, in_channels: int) -> nn.Module:
    num_classes, _, image_size, _ = SPECS[name]
    torch.manual_seed(0)
    return build_model(name, num_classes, in_channels=in_channels, image_size=image_size)


def batch(name: str, in_channels: int) -> torch.Tensor:
    """Two inputs the model ``name`` takes."""
    _, _, size, dims = SPECS[name]
    return torch.randn(2, in_channels, *[size] * dims, generator=torch.Generator().manual_seed(1))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Batches of two gain nothing from intra-op threads, and on a busy machine every thread
    barrier of the deep nets' thousands of small ops can wait a whole time slice (seen: DenseNet's
    step 100× slower with 2 threads than with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def built() -> Iterator[Callable[[str], nn.Module]]:
    """Each model with its ``SPECS`` sizes, built once for the tests that only read it."""
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            cache[name] = build(name, SPECS[name][1])
        return cache[name]

    yield get
    cache.clear()


def test_every_model_is_registered():
    assert set(SPECS) <= set(model_names())


@pytest.mark.parametrize("name", SPECS)
def test_forward_and_backward_on_grey_inputs(name):
    model = build(name, in_channels=1)
    logits = model(batch(name, in_channels=1))
    assert logits.shape == (2, SPECS[name][0])
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for parameter_name, p in model.named_parameters():
        assert p.grad is not None, parameter_name
        assert torch.isfinite(p.grad).all(), parameter_name
        assert p.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_channels_last_inputs_give_the_same_logits(name, built):
    model, x = built(name).eval(), batch(name, SPECS[name][1])
    with torch.no_grad():
        expected = model(x)
        logits = model(x.contiguous(memory_format=torch.channels_last))
    assert expected.shape == (2, SPECS[name][0])
    torch.testing.assert_close(logits, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet50", 23_520_842),
        ("densenet121", 6_956_298),
        # 28×28 grey: stem 3×3 16 + BN; blocks (16->16), (16->32, 1×1 shortcut), (32->64, 1×1
        # shortcut), each two 3×3 convolutions + BN; linear 64 -> 10
        (
            "resnet8",
            (9 * 16 + 32)
            + 2 * (9 * 16 * 16 + 32)
            + (9 * 16 * 32 + 9 * 32 * 32 + 2 * 64 + 16 * 32 + 64)
            + (9 * 32 * 64 + 9 * 64 * 64 + 2 * 128 + 32 * 64 + 128)
            + (640 + 10),
        ),
        # 28×28 grey: conv 3×3 32, conv 3×3 64, linear 64·7·7 -> 256, linear 256 -> 10
        ("small-cnn", (9 * 32 + 32) + (32 * 9 * 64 + 64) + (3136 * 256 + 256) + (2560 + 10)),
        # length 40: conv k5 32, conv k3 64, conv k3 64, linear 64·10 -> 10
        ("cnn1d", (5 * 32 + 32) + (32 * 3 * 64 + 64) + (64 * 3 * 64 + 64) + (6400 + 10)),
    ],
)
def test_exact_parameter_counts(name, expected, built):
    assert parameter_count(built(name)) == expected


@pytest.mark.parametrize(
    ("name", "published"),
    [
        ("resnet110", 45.86e6),
        ("wrn-26-10", 36.48e6),
        ("resnet50-tiny", 25.14e6),
        ("resnet20", 0.27e6),  # He et al. 2016, Table 6
    ],
)
def test_parameter_counts_match_the_published_ones(name, published, built):
    assert parameter_count(built(name)) == pytest.approx(published, rel=0.01)


def test_tiny_imagenet_resnet_is_resnet50_with_2x2x2048_features_into_its_linear_layer(built):
    tiny_backbone = parameter_count(built("resnet50-tiny")) - (2 * 2 * 2048 * 200 + 200)
    cifar_backbone = parameter_count(built("resnet50")) - (2048 * 10 + 10)
    assert tiny_backbone == cifar_backbone


def test_names_are_case_insensitive_and_options_reach_the_constructor():
    assert isinstance(build_model(" Small-CNN ", 10, in_channels=1, image_size=28), nn.Module)
    model = build_model("wrn-26-10", 10, dropout=0.3)
    assert {m.p for m in model.modules() if isinstance(m, nn.Dropout)} == {0.3}


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet-9'") as excinfo:
        build_model("resnet-9", 10)
    for name in model_names():
        assert name in str(excinfo.value)


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"num_classes": 0}, "num_classes must be a positive integer, got 0"),
        ({"num_classes": 2.0}, "num_classes must be a positive integer, got 2.0"),
        ({"in_channels": -1}, "in_channels must be a positive integer, got -1"),
        ({"in_channels": True}, "in_channels must be a positive integer, got True"),
        ({"image_size": 0}, "image_size must be a positive integer, got 0"),
    ],
)
def test_bad_sizes_are_named(arguments, match):
    with pytest.raises(ValueError, match=match):
        build_model("small-cnn", **{"num_classes": 10, "image_size": 28, **arguments})


@pytest.mark.parametrize(
    ("name", "image_size", "match"),
    [
        ("densenet121", 4, "image_size must be at least 8 for DenseNet-121, got 4"),
        ("small-cnn", 30, "image_size must be a positive multiple of 4, got 30"),
    ],
)
def test_image_sizes_a_model_cannot_take_are_named(name, image_size, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, 10, image_size=image_size)


def test_wide_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match=r"depth must be 6 n \+ 2 with n >= 1, got 28"):
        WideResNet(28, 10, num_classes=10)


@pytest.mark.parametrize("depth", [2, 9, 21])
def test_three_stage_resnet_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match=rf"depth must be 6n \+ 2 \(8, 14, 20, ...\), got {depth}"):
        ThreeStageResNet(depth, num_classes=10)


def test_three_stage_resnet_depth_counts_its_weighted_layers():
    """6n + 2 = the stem, two convolutions per block, the linear layer (1×1 shortcuts aside)."""
    for depth in (8, 14, 20):
        model = ThreeStageResNet(depth, num_classes=10)
        layers = [
            m
            for m in model.modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
        ]
        assert len(layers) == depth
