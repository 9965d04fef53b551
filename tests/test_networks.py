"""Networks and the skorch factory."""

import pickle

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

from imbcfkd.losses import FocalLoss, softmax
from imbcfkd.networks import MLP, ResNet18, SmallResNet, make_net
from imbcfkd.sampling import BalancedBatchLoader


@pytest.mark.parametrize(
    "shape, blocks",
    [((1, 8, 8), (1, 1, 1)), ((5, 12, 20), (2, 1)), ((3, 32, 32), (1,))],
)
def test_small_resnet_takes_any_channel_count_and_size(shape, blocks):
    net = SmallResNet(input_shape=shape, n_classes=3, width=8, blocks=blocks)
    assert net(torch.zeros(4, *shape)).shape == (4, 3)
    assert net.features(torch.zeros(2, *shape)).shape == (2, 8 * 2 ** (len(blocks) - 1))


def test_small_resnet_explains_what_it_needs():
    with pytest.raises(ValueError, match=r"input_shape=\(channels, height, width\)"):
        SmallResNet()
    with pytest.raises(ValueError, match="at least 8x8"):
        SmallResNet(input_shape=(3, 4, 4))
    with pytest.raises(ValueError, match="got \\(3, 8\\)"):
        SmallResNet(input_shape=(3, 8))


def test_resnet18_loads_weights_from_a_named_file(tmp_path):
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)

    rgb = ResNet18(input_shape=(3, 32, 32), n_classes=2, weights_path=path)
    assert torch.equal(
        rgb.model.layer3[0].conv1.weight, reference.layer3[0].conv1.weight
    )
    assert rgb(torch.zeros(2, 3, 32, 32)).shape == (2, 2)

    grey = ResNet18(input_shape=(1, 32, 32), weights_path=path)
    expected = reference.conv1.weight.mean(dim=1, keepdim=True)
    assert torch.allclose(grey.model.conv1.weight, expected)

    small = ResNet18(input_shape=(3, 16, 16), weights_path=path, small_input=True)
    assert small.model.conv1.kernel_size == (3, 3)
    assert small(torch.zeros(2, 3, 16, 16)).shape == (2, 2)


def test_resnet18_missing_weights_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="torch.save"):
        ResNet18(input_shape=(3, 32, 32), weights_path=tmp_path / "absent.pt")
    torch.save({"not": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="does not hold resnet18 weights"):
        ResNet18(input_shape=(3, 32, 32), weights_path=tmp_path / "wrong.pt")


def test_mlp_flattens_its_input():
    net = MLP(input_shape=(2, 3, 4), n_classes=2, hidden_units=(5, 6))
    assert net(torch.zeros(7, 2, 3, 4)).shape == (7, 2)
    assert net.features(torch.zeros(7, 24)).shape == (7, 6)


def test_make_net_builds_balanced_focal_net_with_probabilities():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 3, 8, 8)).astype(np.float32)
    y = np.r_[np.zeros(50), np.ones(10)].astype(np.int64)
    net = make_net(
        "resnet",
        input_shape=(3, 8, 8),
        criterion="focal",
        max_epochs=2,
        module__width=4,
    )
    assert net.iterator_train is BalancedBatchLoader
    assert net.criterion is FocalLoss
    net.fit(X, y)

    proba = net.predict_proba(X)
    assert proba.shape == (60, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    restored = pickle.loads(pickle.dumps(net))
    np.testing.assert_allclose(restored.predict_proba(X), proba, rtol=1e-6)


def test_make_net_unbalanced_shuffles_and_rejects_unknown_names():
    net = make_net("mlp", balanced=False)
    assert net.iterator_train__shuffle is True
    assert net.predict_nonlinearity is softmax
    with pytest.raises(ValueError, match="architecture must be one of"):
        make_net("vgg")
    with pytest.raises(ValueError, match="criterion must be one of"):
        make_net(criterion="hinge")
