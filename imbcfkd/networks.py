"""Networks for small images and features, and a factory of skorch nets.

Every module here takes ``input_shape`` (the shape of one sample, without the
batch dimension) and ``n_classes``. :class:`imbcfkd.CFKDClassifier` fills in
both from the data when the module of a net accepts them, so a net can be
configured once and fitted on data of any shape.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from skorch import NeuralNetClassifier
from torch import nn

from .losses import FocalLoss, softmax
from .sampling import BalancedBatchLoader

__all__ = ["MLP", "ResNet18", "SmallResNet", "make_net"]


class SmallResNet(nn.Module):
    """A residual network for small images, with a CIFAR-style stem.

    The stem is a single 3x3 convolution without pooling, so images as small
    as 8x8 keep their spatial detail. Each stage after the first halves the
    resolution and doubles the width; global average pooling makes the
    network independent of the image size.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` of one image; any channel count, sides
        of 8 pixels or more.
    n_classes : int, default=2
        Number of output logits.
    width : int, default=16
        Channels of the first stage.
    blocks : tuple of int, default=(1, 1, 1)
        Residual blocks in each stage; its length is the number of stages.
        ``(1, 1, 1)`` is a ResNet-8, ``(3, 3, 3)`` a ResNet-20.
    norm : {"batch", "group"}, default="group"
        Normalisation layers. Batch normalisation predicts with running
        statistics, which lag behind the weights when training takes few
        steps; group normalisation (8 groups) behaves the same in training
        and prediction.

    Examples
    --------
    >>> import torch
    >>> from imbcfkd.networks import SmallResNet
    >>> net = SmallResNet(input_shape=(1, 8, 8), n_classes=2)
    >>> net(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self, input_shape=None, n_classes=2, width=16, blocks=(1, 1, 1), norm="group"
    ):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be 'batch' or 'group'; got {norm!r}.")
        make_norm = _NORMS[norm]
        input_shape = _check_input_shape(input_shape, 3, "SmallResNet")
        if min(input_shape[1:]) < 8:
            raise ValueError(
                "SmallResNet needs images of at least 8x8 pixels; got "
                f"{input_shape[1]}x{input_shape[2]}."
            )
        if len(blocks) < 1 or min(blocks) < 1:
            raise ValueError(
                f"blocks must list at least one stage of at least one block; "
                f"got {blocks}."
            )
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False),
            make_norm(width),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], width
        for index, n_blocks in enumerate(blocks):
            out_channels = width * 2**index
            stride = 1 if index == 0 else 2
            for block in range(n_blocks):
                stages.append(
                    _BasicBlock(
                        channels, out_channels, stride if block == 0 else 1, make_norm
                    )
                )
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, n_classes)

    def features(self, x):
        """Pooled representation before the last layer, shape (n, channels)."""
        x = self.stages(self.stem(x))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, x):
        return self.head(self.features(x))


class ResNet18(nn.Module):
    """torchvision's ResNet-18, adapted to any channel and class count.

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)`` of one image.
    n_classes : int, default=2
        Number of output logits.
    weights_path : str or path-like, default=None
        File holding a state dict of torchvision's ``resnet18`` (for instance
        ImageNet weights saved with ``torch.save(model.state_dict(), path)``).
        Nothing is downloaded: without a file the network starts from random
        weights. The final layer is always new; for a channel count other than
        three, the first convolution's weights are averaged over the colour
        channels.
    small_input : bool, default=False
        Replace the 7x7 stride-2 stem and its max pooling by a 3x3 stride-1
        convolution, for images of 32x32 pixels or less. The stem's
        pretrained weights are then not used.

    Notes
    -----
    ImageNet weights expect inputs normalised with ImageNet's channel means
    and standard deviations; normalise the images before ``fit``.
    """

    def __init__(
        self, input_shape=None, n_classes=2, weights_path=None, small_input=False
    ):
        super().__init__()
        from torchvision.models import resnet18

        input_shape = _check_input_shape(input_shape, 3, "ResNet18")
        self.model = resnet18(weights=None, num_classes=n_classes)
        if small_input:
            self.model.conv1 = nn.Conv2d(
                input_shape[0], 64, 3, stride=1, padding=1, bias=False
            )
            self.model.maxpool = nn.Identity()
        elif input_shape[0] != 3:
            self.model.conv1 = nn.Conv2d(
                input_shape[0], 64, 7, stride=2, padding=3, bias=False
            )
        if weights_path is not None:
            self._load_weights(weights_path, input_shape[0], small_input)

    def _load_weights(self, weights_path, in_channels, small_input):
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"No weights file at {path}. Save torchvision's resnet18 weights "
                "there with torch.save(model.state_dict(), path) on a machine "
                "that has them, or pass weights_path=None to start from random "
                "weights."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if small_input:
            state.pop("conv1.weight", None)
        elif in_channels != 3 and "conv1.weight" in state:
            mean = state["conv1.weight"].mean(dim=1, keepdim=True)
            state["conv1.weight"] = mean.repeat(1, in_channels, 1, 1)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        expected_missing = {"fc.weight", "fc.bias"}
        if small_input:
            expected_missing.add("conv1.weight")
        if unexpected or set(missing) - expected_missing:
            raise ValueError(
                f"{path} does not hold resnet18 weights: missing "
                f"{sorted(set(missing) - expected_missing)[:5]}, unexpected "
                f"{sorted(unexpected)[:5]}."
            )

    def features(self, x):
        """Pooled representation before the last layer, shape (n, 512)."""
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return torch.flatten(m.avgpool(x), 1)

    def forward(self, x):
        return self.model.fc(self.features(x))


class MLP(nn.Module):
    """A multi-layer perceptron for feature vectors (or flattened images).

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample; it is flattened, so ``(n_features,)`` and
        ``(channels, height, width)`` both work.
    n_classes : int, default=2
        Number of output logits.
    hidden_units : tuple of int, default=(64,)
        Width of each hidden layer.
    dropout : float, default=0.0
        Dropout probability after each hidden layer.
    """

    def __init__(self, input_shape=None, n_classes=2, hidden_units=(64,), dropout=0.0):
        super().__init__()
        if input_shape is None:
            raise ValueError(_missing_shape_message("MLP", "(n_features,)"))
        n_inputs = int(torch.Size(tuple(input_shape)).numel())
        layers = [nn.Flatten()]
        for units in hidden_units:
            layers += [nn.Linear(n_inputs, units), nn.ReLU(), nn.Dropout(dropout)]
            n_inputs = units
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(n_inputs, n_classes)

    def features(self, x):
        """Output of the last hidden layer, shape (n, hidden_units[-1])."""
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


_ARCHITECTURES = {"resnet": SmallResNet, "resnet18": ResNet18, "mlp": MLP}
_CRITERIA = {"cross_entropy": nn.CrossEntropyLoss, "focal": FocalLoss}


def make_net(
    architecture="resnet",
    *,
    input_shape=None,
    n_classes=2,
    criterion="cross_entropy",
    balanced=True,
    max_epochs=15,
    lr=1e-3,
    batch_size=64,
    optimizer=torch.optim.Adam,
    weight_decay=1e-4,
    device="cpu",
    verbose=0,
    **kwargs,
):
    """Build a skorch classifier with batch balancing built in.

    Parameters
    ----------
    architecture : {"resnet", "resnet18", "mlp"} or nn.Module class, \
default="resnet"
        ``"resnet"`` is :class:`SmallResNet`, ``"resnet18"`` is
        :class:`ResNet18`, ``"mlp"`` is :class:`MLP`.
    input_shape : tuple of int, default=None
        Shape of one sample. May stay ``None`` when the net is given to
        :class:`imbcfkd.CFKDClassifier`, which sets it from the data.
    n_classes : int, default=2
        Number of classes; also set by ``CFKDClassifier`` from the data.
    criterion : {"cross_entropy", "focal"} or nn.Module class, \
default="cross_entropy"
        Training loss. Options of the loss go in ``criterion__*`` keywords.
    balanced : bool, default=True
        Draw class-balanced mini-batches (:class:`BalancedBatchLoader`) rather
        than shuffled ones.
    max_epochs : int, default=15
        Training epochs.
    lr : float, default=1e-3
        Learning rate.
    batch_size : int, default=64
        Mini-batch size.
    optimizer : torch optimizer class, default=torch.optim.Adam
        Optimizer.
    weight_decay : float, default=1e-4
        L2 penalty, passed to the optimizer.
    device : str, default="cpu"
        Torch device, e.g. ``"cuda"``.
    verbose : int, default=0
        skorch's verbosity: 1 prints a table of epochs.
    **kwargs
        Any other argument of :class:`skorch.NeuralNetClassifier`, such as
        ``module__width=32``, ``train_split=skorch.dataset.ValidSplit(5)`` or
        ``callbacks=[...]``. By default the net uses all the data it is given
        for training (``train_split=None``).

    Returns
    -------
    net : skorch.NeuralNetClassifier
        An unfitted net. It expects ``float32`` inputs and integer-encoded
        ``int64`` targets, and ``predict_proba`` returns probabilities.

    Examples
    --------
    >>> from imbcfkd.networks import make_net
    >>> net = make_net("resnet", input_shape=(3, 16, 16), criterion="focal")
    >>> net.module, net.criterion.__name__
    (<class 'imbcfkd.networks.SmallResNet'>, 'FocalLoss')
    """
    module = _lookup(architecture, _ARCHITECTURES, "architecture")
    criterion = _lookup(criterion, _CRITERIA, "criterion")
    params = {
        "train_split": None,
        "predict_nonlinearity": softmax,
        "optimizer__weight_decay": weight_decay,
        "module__n_classes": n_classes,
    }
    if input_shape is not None:
        params["module__input_shape"] = tuple(input_shape)
    if balanced:
        params["iterator_train"] = BalancedBatchLoader
    else:
        params["iterator_train__shuffle"] = True
    params.update(kwargs)
    return NeuralNetClassifier(
        module,
        criterion=criterion,
        optimizer=optimizer,
        max_epochs=max_epochs,
        lr=lr,
        batch_size=batch_size,
        device=device,
        verbose=verbose,
        **params,
    )


def _group_norm(channels):
    return nn.GroupNorm(min(8, channels), channels)


_NORMS = {"batch": nn.BatchNorm2d, "group": _group_norm}


class _BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride, make_norm):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = make_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = make_norm(out_channels)
        # A module rather than F.relu, so that a smooth surrogate of the net
        # (see imbcfkd.explainers) can swap the activation.
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                make_norm(out_channels),
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def _lookup(value, table, name):
    if isinstance(value, str):
        if value not in table:
            raise ValueError(
                f"{name} must be one of {sorted(table)} or a torch module class; "
                f"got {value!r}."
            )
        return table[value]
    return value


def _check_input_shape(input_shape, ndim, owner):
    if input_shape is None:
        raise ValueError(_missing_shape_message(owner, "(channels, height, width)"))
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != ndim:
        raise ValueError(
            f"{owner} needs input_shape=(channels, height, width); got "
            f"{input_shape}. Images go in as arrays of shape "
            "(n_samples, channels, height, width)."
        )
    return input_shape


def _missing_shape_message(owner, shape):
    return (
        f"{owner} needs input_shape={shape}; got None. Set module__input_shape "
        "on the net, or give the net to CFKDClassifier, which sets it from the "
        "data."
    )
