"""Counterfactual explainers: minimal edits that flip a classifier.

The explainer protocol
----------------------
An explainer is an object with one required method and one optional method:

``explain(net, X, target) -> (counterfactuals, reached)``
    ``net`` is a fitted skorch net (its torch module is ``net.module_``);
    ``X`` is a float32 array in the net's input format, ``(n, channels,
    height, width)`` for images or ``(n, n_features)``; ``target`` is an int
    array of shape ``(n,)`` holding the *encoded* class (the index of the
    net's output) each sample should be moved to. It returns the
    counterfactuals, a float32 array of the same shape as ``X``, and
    ``reached``, a bool array of shape ``(n,)`` that says which of them the
    explainer believes reach their target. CFKD checks the flips on the
    classifier itself, so ``reached`` only serves diagnostics. An explainer
    may also take ``locked``, a bool array of the pixels it may not change;
    :class:`imbcfkd.CFKDClassifier` passes it when ``explore_threshold`` is
    set.

``fit(X, y) -> self`` (optional)
    Called once by :class:`imbcfkd.CFKDClassifier` with the training images
    (in the net's input format) and encoded labels before any explanation,
    for explainers that learn something from the data, such as its value
    range or a generative prior.

Explainers that derive from :class:`sklearn.base.BaseEstimator` expose their
settings to ``get_params``, so that a grid search can tune them through
``explainer__<name>``.

Two explainers are built in. :class:`GradientExplainer` perturbs pixels
directly, through a low-resolution perturbation. :class:`AutoencoderExplainer`
learns an autoencoder of the training images and searches its latent space,
so that edits follow the data. :class:`imbcfkd.CFKDClassifier` uses the
gradient explainer unless told otherwise.

Both take the ingredients of the SCE explainer as options, each of which can
be switched on alone: a smooth surrogate of the classifier to take gradients
from (``surrogate``), sparse edits (``mask_threshold``) and, through
``locked`` and :func:`changed_region`, a second counterfactual that has to
find another explanation. The autoencoder is the on-manifold prior.
"""

import copy
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

__all__ = ["AutoencoderExplainer", "GradientExplainer", "changed_region"]


class _SearchExplainer(BaseEstimator):
    """Shared machinery: value range, batching, smoothing, masks and the search.

    Subclasses define ``_start(x)``, which returns the variable to optimise
    (one row per sample of ``x``) and a function ``change_of(rows_of_variable,
    rows)`` mapping the given rows of it to the change it makes to ``x[rows]``.
    """

    def _fit_range(self, X):
        X = np.asarray(X, dtype=np.float32)
        axes = tuple(i for i in range(X.ndim) if i != 1)
        self.data_min_ = X.min(axis=axes)
        self.data_max_ = X.max(axis=axes)

    def explain(self, net, X, target, locked=None):
        """Search a counterfactual of each sample for its target class.

        Parameters
        ----------
        net : fitted skorch net
            The classifier to explain; its module is put in evaluation mode
            for the search and restored afterwards.
        X : ndarray of shape (n, channels, height, width) or (n, n_features)
            Samples to explain, in the net's input format.
        target : ndarray of int, shape (n,)
            Encoded class each sample should reach.
        locked : ndarray of bool, default=None
            Values that may not change, of shape ``(n, height, width)`` (a
            pixel in all its channels) or the shape of ``X``: usually the
            region an earlier counterfactual of the same sample changed (see
            :func:`changed_region`), so that a second counterfactual has to
            find another explanation. ``None`` locks nothing.

        Returns
        -------
        counterfactuals : ndarray of float32, same shape as X
            The first candidate that reached the target, or the last attempt
            for samples that never did.
        reached : ndarray of bool, shape (n,)
            Whether each counterfactual reached its target on ``net`` itself
            (not on the surrogate).
        """
        self._validate_params()
        module = net.module_
        device = next(module.parameters()).device
        X = np.asarray(X, dtype=np.float32)
        target = np.asarray(target, dtype=np.int64)
        allowed = None if locked is None else _allowed_values(locked, X.shape)
        counterfactuals = np.empty_like(X)
        reached = np.zeros(len(X), dtype=bool)

        was_training = module.training
        module.eval()
        try:
            guide = module
            if self.surrogate is not None:
                guide = self._surrogate_of(module, X, device)
            starts = range(0, len(X), self.batch_size)
            if self.verbose:
                from tqdm.auto import tqdm

                starts = tqdm(starts, desc="counterfactuals", unit="batch")
            for start in starts:
                stop = start + self.batch_size
                x = torch.from_numpy(X[start:stop]).to(device)
                mask = None
                if allowed is not None:
                    mask = torch.from_numpy(allowed[start:stop]).to(device)
                batch_cf, batch_reached = self._explain_batch(
                    module,
                    guide,
                    x,
                    torch.from_numpy(target[start:stop]).to(device),
                    mask,
                )
                counterfactuals[start:stop] = batch_cf.cpu().numpy()
                reached[start:stop] = batch_reached.cpu().numpy()
        finally:
            module.train(was_training)
        return counterfactuals, reached

    def _explain_batch(self, module, guide, x, target, mask):
        variable, change_of = self._start(x)
        search = partial(self._search, module, guide, x, variable, change_of, target)
        best, reached = search(mask, self.steps)
        if self.mask_threshold is None or x.dim() != 4:
            return best, reached

        # Sparsity: confine the change to the region it mattered most in,
        # restore everything else from the original, and search on inside
        # the region. Samples whose confined change fails keep the full one.
        region = _region(best - x, self.mask_threshold)
        if mask is not None:
            region = region * mask
        sparse, sparse_reached = search(region, max(1, self.steps // 2))
        keep = sparse_reached | ~reached
        best[keep] = sparse[keep]
        return best, reached | sparse_reached

    def _search(self, module, guide, x, variable, change_of, target, mask, steps):
        """Optimise ``variable`` until each sample's candidate reaches its target.

        The loss, computed on ``guide`` (the net itself or its smooth
        surrogate), is the cross-entropy towards the target plus
        ``closeness`` times the mean absolute change. Success is judged on
        ``module``. Only the samples still searching go through the nets, so
        a batch gets cheaper as its samples succeed.
        """
        optimizer = torch.optim.Adam([variable], lr=self.step_size)
        reached = torch.zeros(len(target), dtype=torch.bool, device=target.device)
        best = x.clone()
        for _ in range(steps + 1):
            active = torch.nonzero(~reached).squeeze(1)
            n_active = len(active)
            # Pad to a power of two with finished samples (whose results are
            # ignored): few distinct tensor sizes keep the memory allocator
            # from fragmenting, so memory stays flat over many batches.
            n_rows = min(len(target), 1 << (n_active - 1).bit_length())
            done = torch.nonzero(reached).squeeze(1)[: n_rows - n_active]
            rows = torch.cat([active, done])
            change = change_of(variable[rows], rows)
            if mask is not None:
                change = change * mask[rows]
            candidate = self._clip(x[rows] + change)
            logits = guide(candidate)[:n_active]
            candidate, change = candidate[:n_active], change[:n_active]
            if guide is module:
                judged = logits.detach()
            else:
                with torch.no_grad():
                    judged = module(candidate)

            # Keep the first candidate of each sample that reaches its target,
            # and the latest one of each sample that has not (yet).
            best[active] = candidate.detach()
            newly = self._reaches(judged, target[active])
            reached[active[newly]] = True
            if bool(reached.all()):
                break

            loss = F.cross_entropy(logits, target[active], reduction="none")
            loss = loss + self.closeness * change.abs().flatten(1).mean(dim=1)
            loss = loss[~newly].sum()
            (variable.grad,) = torch.autograd.grad(loss, variable)
            optimizer.step()
        return best, reached

    def _reaches(self, logits, target):
        """Whether the net predicts ``target``, confidently enough if asked."""
        reaches = logits.argmax(dim=1) == target
        if self.target_confidence is not None:
            probability = F.softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
            reaches &= probability >= self.target_confidence
        return reaches

    def _surrogate_of(self, module, X, device):
        """A smooth copy of ``module``, distilled on its predictions for ``X``.

        The copy starts from the net's weights with every ``nn.ReLU`` module
        replaced by a softplus, and is trained for ``surrogate_epochs`` to
        match the net's class probabilities on noisy (``"noise"``) or
        adversarially perturbed (``"adversarial"``) versions of ``X``. It is
        kept in ``surrogate_`` and reused while the net's weights stay the
        same.
        """
        key = (id(module), _fingerprint(module))
        if getattr(self, "_surrogate_key", None) == key:
            return self.surrogate_
        generator = _generator(self.random_state)
        X = torch.from_numpy(X).to(device)
        with torch.no_grad():
            soft = torch.cat(
                [F.softmax(module(b), dim=1) for b in X.split(self.batch_size)]
            )
        surrogate = copy.deepcopy(module)
        _smooth_activations(surrogate)
        surrogate.eval()
        for parameter in surrogate.parameters():
            parameter.requires_grad_(True)
        scale = self.surrogate_noise * float(X.amax() - X.amin())
        optimizer = torch.optim.Adam(surrogate.parameters(), lr=1e-3)
        for _ in range(self.surrogate_epochs):
            order = torch.randperm(len(X), generator=generator).to(device)
            for batch in order.split(64):
                inputs, goal = X[batch], soft[batch]
                noise = torch.randn(inputs.shape, generator=generator).to(device)
                if self.surrogate == "adversarial":
                    # One signed gradient step of the noise's size, the
                    # direction in which the surrogate departs most from the
                    # net's prediction.
                    probe = inputs.clone().requires_grad_(True)
                    gap = _distillation_loss(surrogate(probe), goal)
                    (grad,) = torch.autograd.grad(gap, probe)
                    inputs = inputs + scale * grad.sign()
                else:
                    inputs = inputs + scale * noise
                loss = _distillation_loss(surrogate(inputs), goal)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        for parameter in surrogate.parameters():
            parameter.requires_grad_(False)
        self.surrogate_ = surrogate
        self._surrogate_key = key
        return surrogate

    def _clip(self, x):
        """Clip to the value range seen in ``fit``, when there was a fit."""
        if not hasattr(self, "data_min_"):
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        low = torch.as_tensor(self.data_min_, device=x.device).view(shape)
        high = torch.as_tensor(self.data_max_, device=x.device).view(shape)
        return torch.maximum(torch.minimum(x, high), low)


def changed_region(X, counterfactuals, threshold=0.25):
    """The pixels a counterfactual changed, as a smoothed, thresholded mask.

    The absolute change is averaged over channels, blurred over 3x3
    neighbourhoods, and compared with ``threshold`` times its largest value
    in the image, so that the region follows the change rather than its
    noise.

    Parameters
    ----------
    X : ndarray of shape (n, channels, height, width)
        Original images.
    counterfactuals : ndarray of the same shape
        Their counterfactuals.
    threshold : float, default=0.25
        Share of the image's largest blurred change a pixel needs to count
        as changed.

    Returns
    -------
    region : ndarray of bool, shape (n, height, width)
        ``True`` where the counterfactual changed the image. An unchanged
        image has an empty region.

    Examples
    --------
    >>> import numpy as np
    >>> from imbcfkd.explainers import changed_region
    >>> X = np.zeros((1, 3, 8, 8), dtype="float32")
    >>> cf = X.copy(); cf[0, :, :4, :4] = 1.0
    >>> region = changed_region(X, cf)
    >>> bool(region[0, 0, 0]), bool(region[0, 7, 7])
    (True, False)
    """
    X = np.asarray(X, dtype=np.float32)
    counterfactuals = np.asarray(counterfactuals, dtype=np.float32)
    if X.ndim != 4 or counterfactuals.shape != X.shape:
        raise ValueError(
            "changed_region needs images and counterfactuals of the same shape "
            f"(n, channels, height, width); got {X.shape} and "
            f"{counterfactuals.shape}."
        )
    change = torch.from_numpy(counterfactuals - X)
    return _region(change, threshold)[:, 0].numpy() > 0


def _region(change, threshold):
    """Float mask of shape (n, 1, height, width): 1 where ``change`` matters."""
    blurred = F.avg_pool2d(
        change.abs().mean(dim=1, keepdim=True),
        3,
        stride=1,
        padding=1,
        count_include_pad=False,
    )
    peak = blurred.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
    return ((blurred >= threshold * peak) & (peak > 0)).float()


def _allowed_values(locked, shape):
    """1 where a value may change, 0 where it is locked, broadcastable to X."""
    locked = np.asarray(locked, dtype=bool)
    if len(shape) == 4 and locked.shape == (shape[0],) + tuple(shape[2:]):
        locked = locked[:, None]
    elif locked.shape != tuple(shape):
        raise ValueError(
            f"locked must have the shape of X {tuple(shape)}"
            + (
                f" or of its pixels {(shape[0],) + tuple(shape[2:])}"
                if len(shape) == 4
                else ""
            )
            + f"; got {locked.shape}."
        )
    return np.ascontiguousarray(~locked, dtype=np.float32)


def _smooth_activations(module):
    """Replace every ``nn.ReLU`` inside ``module`` by a softplus, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus(beta=5.0))
        else:
            _smooth_activations(child)


def _distillation_loss(logits, probabilities):
    return F.kl_div(F.log_softmax(logits, dim=1), probabilities, reduction="batchmean")


def _fingerprint(module):
    """A cheap summary of the weights, to notice that a net has changed."""
    with torch.no_grad():
        return tuple(round(float(p.double().sum()), 10) for p in module.parameters())


def _generator(random_state):
    """A CPU torch generator seeded from ``random_state`` (or from torch)."""
    generator = torch.Generator()
    if random_state is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    else:
        seed = int(check_random_state(random_state).randint(2**31 - 1))
    generator.manual_seed(seed)
    return generator


class GradientExplainer(_SearchExplainer):
    """Gradient search for a smooth, small perturbation that flips a net.

    The perturbation is optimised at reduced resolutions and upsampled
    bilinearly, which keeps it low-frequency (a colour cast, a blob) rather
    than adversarial pixel noise; by default it is the sum of a colour shift
    of the whole image and a coarse 4x4 pattern. The loss is the
    cross-entropy towards the target class plus an L1 closeness penalty on
    the perturbation. All samples of a batch are optimised together; each
    keeps the first perturbation that the net assigns to its target with
    ``target_confidence``.

    Parameters
    ----------
    steps : int, default=60
        Optimisation steps per batch.
    step_size : float, default=0.05
        Learning rate of the Adam optimiser over the perturbation.
    closeness : float, default=0.1
        Weight of the L1 penalty on the perturbation.
    target_confidence : float in (0, 1) or None, default=0.9
        A counterfactual succeeds once the net gives its target class at
        least this probability (and predicts it). ``None`` stops at the
        first candidate the net assigns to the target, just across the
        decision boundary; a higher value asks for an edit the net is sure
        of, which carries the decisive feature further (a whole colour cast
        rather than a hint of one). A net that is rarely this confident
        needs more ``steps`` or a lower value; a sample that does not get
        there returns its last attempt, with ``reached`` false.
    smoothing : int or tuple of int, default=(16, 4)
        Downsampling factor of the perturbation: ``4`` optimises a 4x4
        image for a 16x16 input, ``1`` perturbs every pixel freely. A tuple
        sums perturbations at several scales, each upsampled to the image:
        the default adds a colour shift of the whole image (one value per
        channel at 16x16) to a 4x4 pattern, so that the search can explain
        with a global change, such as a colour cast, where that suffices
        and with a local one where it does not. Ignored for feature vectors.
    surrogate : {"noise", "adversarial"} or None, default=None
        Take the search's gradients from a smooth surrogate of the net
        rather than from the net itself, whose raw gradients point to
        adversarial patterns. The surrogate is a copy of the net with
        softplus activations, distilled for ``surrogate_epochs`` on the net's
        predictions for the images to explain, under Gaussian noise
        (``"noise"``) or one-step adversarial perturbations
        (``"adversarial"``) of size ``surrogate_noise``. Success is still
        judged on the net. ``None`` uses the net's own gradients.
    surrogate_epochs : int, default=3
        Distillation epochs of the surrogate.
    surrogate_noise : float, default=0.1
        Size of the surrogate's training perturbations, as a share of the
        images' value range.
    mask_threshold : float in (0, 1) or None, default=None
        Make counterfactuals sparse: after the search, keep the change only
        in the region where its blurred size reaches this share of its
        maximum (see :func:`changed_region`), restore every other pixel
        from the original, and search on, for ``steps // 2`` steps, inside
        the region. A sample whose confined change fails keeps the full
        one. ``None`` leaves changes unconfined. Ignored for feature vectors.
    batch_size : int, default=256
        Samples optimised together; memory grows with it, not with the
        number of samples.
    random_state : int, RandomState instance or None, default=None
        Seeds the surrogate's noise and batch order. ``None`` uses PyTorch's
        global generator.
    verbose : int, default=0
        Show a progress bar over batches when positive.

    Attributes
    ----------
    surrogate_ : torch.nn.Module
        The smooth surrogate of the last net explained, when ``surrogate``
        is set.
    data_min_ : ndarray of shape (channels,) or (n_features,)
        Smallest value of each channel (or feature) seen in ``fit``;
        counterfactuals are clipped to ``[data_min_, data_max_]``.
    data_max_ : ndarray of shape (channels,) or (n_features,)
        Largest value of each channel (or feature) seen in ``fit``.

    See Also
    --------
    AutoencoderExplainer : Edits along a learned model of the images.

    Examples
    --------
    >>> from imbcfkd.explainers import GradientExplainer
    >>> explainer = GradientExplainer(steps=30, smoothing=2)
    """

    _parameter_constraints = {
        "steps": [Interval(Integral, 1, None, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "closeness": [Interval(Real, 0, None, closed="left")],
        "target_confidence": [Interval(Real, 0, 1, closed="neither"), None],
        "smoothing": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "surrogate": [StrOptions({"noise", "adversarial"}), None],
        "surrogate_epochs": [Interval(Integral, 1, None, closed="left")],
        "surrogate_noise": [Interval(Real, 0, None, closed="neither")],
        "mask_threshold": [Interval(Real, 0, 1, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        steps=60,
        step_size=0.05,
        closeness=0.1,
        target_confidence=0.9,
        smoothing=(16, 4),
        surrogate=None,
        surrogate_epochs=3,
        surrogate_noise=0.1,
        mask_threshold=None,
        batch_size=256,
        random_state=None,
        verbose=0,
    ):
        self.steps = steps
        self.step_size = step_size
        self.closeness = closeness
        self.target_confidence = target_confidence
        self.smoothing = smoothing
        self.surrogate = surrogate
        self.surrogate_epochs = surrogate_epochs
        self.surrogate_noise = surrogate_noise
        self.mask_threshold = mask_threshold
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Record the value range of each channel (or feature) of ``X``.

        Parameters
        ----------
        X : ndarray of shape (n, channels, height, width) or (n, n_features)
            Training data in the net's input format.
        y : ignored

        Returns
        -------
        self : GradientExplainer
        """
        self._validate_params()
        self._fit_range(X)
        return self

    def _start(self, x):
        if x.dim() != 4:
            delta = torch.zeros(x.shape, device=x.device, requires_grad=True)
            return delta, lambda delta, rows: delta

        # One block of the variable per scale, each a coarse image that is
        # upsampled to the input's size; the change is their sum.
        factors = _as_tuple(self.smoothing)
        if not factors or not all(
            isinstance(f, Integral) and not isinstance(f, bool) and f >= 1
            for f in factors
        ):
            raise ValueError(
                "smoothing must be a downsampling factor of at least 1 or a "
                f"non-empty tuple of them, such as (16, 4); got {self.smoothing!r}."
            )
        channels, size = x.shape[1], tuple(x.shape[2:])
        grids = [tuple(-(-side // factor) for side in size) for factor in factors]
        lengths = [channels * h * w for h, w in grids]
        delta = torch.zeros((len(x), sum(lengths)), device=x.device, requires_grad=True)

        def change_of(delta, rows):
            change = 0
            for block, grid in zip(delta.split(lengths, dim=1), grids, strict=True):
                block = block.reshape(len(block), channels, *grid)
                if grid != size:
                    block = F.interpolate(
                        block, size=size, mode="bilinear", align_corners=False
                    )
                change = change + block
            return change

        return delta, change_of


def _as_tuple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class AutoencoderExplainer(_SearchExplainer):
    """Counterfactuals searched in the latent space of an autoencoder.

    ``fit`` trains a small convolutional autoencoder on the training images
    (a fully connected one for feature vectors). ``explain`` encodes each
    image to a latent code ``z`` and searches the change ``dz`` that flips
    the classifier, adding the decoded change to the original::

        counterfactual = x + decoder(z + dz) - decoder(z)

    so the edit follows what the autoencoder learned of the data (strokes,
    backgrounds, colours) while the image keeps the detail the autoencoder
    cannot reproduce. The loss is the cross-entropy towards the target plus
    an L1 penalty on the change in pixels.

    Parameters
    ----------
    latent_channels : int, default=8
        Channels of the latent code, which has a quarter of the image's
        height and width (a vector of ``4 * latent_channels`` values for
        feature vectors).
    width : int, default=32
        Channels of the autoencoder's first layer.
    epochs : int, default=30
        Training epochs of the autoencoder.
    lr : float, default=2e-3
        Learning rate of the autoencoder's training (Adam).
    steps : int, default=60
        Search steps per batch of counterfactuals.
    step_size : float, default=0.1
        Learning rate of the Adam optimiser over the latent change.
    closeness : float, default=0.1
        Weight of the L1 penalty on the change in pixels.
    target_confidence : float in (0, 1) or None, default=0.9
        A counterfactual succeeds once the net gives its target class at
        least this probability (and predicts it). ``None`` stops at the
        first candidate the net assigns to the target, just across the
        decision boundary; a higher value asks for an edit the net is sure
        of, which carries the decisive feature further (a whole colour cast
        rather than a hint of one). A net that is rarely this confident
        needs more ``steps`` or a lower value; a sample that does not get
        there returns its last attempt, with ``reached`` false.
    surrogate : {"noise", "adversarial"} or None, default=None
        Take the search's gradients from a smooth surrogate of the net
        rather than from the net itself, whose raw gradients point to
        adversarial patterns. The surrogate is a copy of the net with
        softplus activations, distilled for ``surrogate_epochs`` on the net's
        predictions for the images to explain, under Gaussian noise
        (``"noise"``) or one-step adversarial perturbations
        (``"adversarial"``) of size ``surrogate_noise``. Success is still
        judged on the net. ``None`` uses the net's own gradients.
    surrogate_epochs : int, default=3
        Distillation epochs of the surrogate.
    surrogate_noise : float, default=0.1
        Size of the surrogate's training perturbations, as a share of the
        images' value range.
    mask_threshold : float in (0, 1) or None, default=None
        Make counterfactuals sparse: after the search, keep the change only
        in the region where its blurred size reaches this share of its
        maximum (see :func:`changed_region`), restore every other pixel
        from the original, and search on, for ``steps // 2`` steps, inside
        the region. A sample whose confined change fails keeps the full
        one. ``None`` leaves changes unconfined. Ignored for feature vectors.
    batch_size : int, default=256
        Images per batch, for training and for the search.
    random_state : int, RandomState instance or None, default=None
        Seeds the autoencoder's initialisation and batch order, and the
        surrogate's. ``None`` uses PyTorch's global generator.
    verbose : int, default=0
        Show progress bars when positive.

    Attributes
    ----------
    autoencoder_ : torch.nn.Module
        The trained autoencoder, in evaluation mode, with ``encode`` and
        ``decode`` methods.
    reconstruction_error_ : float
        Mean absolute reconstruction error on the training images after the
        last epoch.
    surrogate_ : torch.nn.Module
        The smooth surrogate of the last net explained, when ``surrogate``
        is set.
    data_min_ : ndarray of shape (channels,) or (n_features,)
        Smallest value of each channel seen in ``fit``.
    data_max_ : ndarray of shape (channels,) or (n_features,)
        Largest value of each channel seen in ``fit``.

    See Also
    --------
    GradientExplainer : Edits pixels directly; needs no training.

    Examples
    --------
    >>> import numpy as np
    >>> from imbcfkd.explainers import AutoencoderExplainer
    >>> X = np.random.RandomState(0).rand(64, 3, 8, 8).astype("float32")
    >>> explainer = AutoencoderExplainer(epochs=2, random_state=0).fit(X)
    >>> explainer.autoencoder_.encode(torch.from_numpy(X[:2])).shape
    torch.Size([2, 8, 2, 2])
    """

    _parameter_constraints = {
        "latent_channels": [Interval(Integral, 1, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "steps": [Interval(Integral, 1, None, closed="left")],
        "step_size": [Interval(Real, 0, None, closed="neither")],
        "closeness": [Interval(Real, 0, None, closed="left")],
        "target_confidence": [Interval(Real, 0, 1, closed="neither"), None],
        "surrogate": [StrOptions({"noise", "adversarial"}), None],
        "surrogate_epochs": [Interval(Integral, 1, None, closed="left")],
        "surrogate_noise": [Interval(Real, 0, None, closed="neither")],
        "mask_threshold": [Interval(Real, 0, 1, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        latent_channels=8,
        width=32,
        epochs=30,
        lr=2e-3,
        steps=60,
        step_size=0.1,
        closeness=0.1,
        target_confidence=0.9,
        surrogate=None,
        surrogate_epochs=3,
        surrogate_noise=0.1,
        mask_threshold=None,
        batch_size=256,
        random_state=None,
        verbose=0,
    ):
        self.latent_channels = latent_channels
        self.width = width
        self.epochs = epochs
        self.lr = lr
        self.steps = steps
        self.step_size = step_size
        self.closeness = closeness
        self.target_confidence = target_confidence
        self.surrogate = surrogate
        self.surrogate_epochs = surrogate_epochs
        self.surrogate_noise = surrogate_noise
        self.mask_threshold = mask_threshold
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Train the autoencoder on ``X`` and record its value range.

        Parameters
        ----------
        X : ndarray of shape (n, channels, height, width) or (n, n_features)
            Training data in the net's input format.
        y : ignored

        Returns
        -------
        self : AutoencoderExplainer
        """
        self._validate_params()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim not in (2, 4):
            raise ValueError(
                "AutoencoderExplainer needs images (n, channels, height, width) or "
                f"vectors (n, n_features); got an array of shape {X.shape}."
            )
        self._fit_range(X)
        generator = _generator(self.random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(
                int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            )
            if X.ndim == 4:
                model = _ConvAutoencoder(X.shape[1:], self.width, self.latent_channels)
            else:
                model = _DenseAutoencoder(X.shape[1], self.width, self.latent_channels)
        self.autoencoder_ = self._train(model, torch.from_numpy(X), generator)
        return self

    def _train(self, model, X, generator):
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        epochs = range(self.epochs)
        if self.verbose:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="autoencoder", unit="epoch")
        model.train()
        for _ in epochs:
            total = 0.0
            for batch in torch.randperm(len(X), generator=generator).split(
                self.batch_size
            ):
                reconstruction = model.decode(model.encode(X[batch]))
                loss = F.mse_loss(reconstruction, X[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                error = (reconstruction.detach() - X[batch]).abs().mean()
                total += float(error) * len(batch)
            self.reconstruction_error_ = total / len(X)
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model

    def _start(self, x):
        if not hasattr(self, "autoencoder_"):
            raise ValueError(
                "AutoencoderExplainer must be fitted on training images before it "
                "explains; call fit(X) (CFKDClassifier does this itself)."
            )
        autoencoder = self.autoencoder_
        if next(autoencoder.parameters()).device != x.device:
            # A copy on the net's device; the fitted one stays where it is.
            autoencoder = copy.deepcopy(autoencoder).to(x.device)
        with torch.no_grad():
            code = autoencoder.encode(x)
            decoded = autoencoder.decode(code)
        delta = torch.zeros_like(code, requires_grad=True)

        def change_of(delta, rows):
            return autoencoder.decode(code[rows] + delta) - decoded[rows]

        return delta, change_of


class _ConvAutoencoder(nn.Module):
    """Two stride-2 stages down to the code, and back up to the image size."""

    def __init__(self, input_shape, width, latent_channels):
        super().__init__()
        channels, height, width_pixels = input_shape
        self.sizes = ((-(-height // 2), -(-width_pixels // 2)), (height, width_pixels))
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * width, latent_channels, 1),
        )
        self.decoder = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(latent_channels, 2 * width, 3, padding=1), nn.SiLU()
                ),
                nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.SiLU()),
                nn.Conv2d(width, channels, 3, padding=1),
            ]
        )

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        x = self.decoder[0](code)
        x = self.decoder[1](F.interpolate(x, size=self.sizes[0], mode="nearest"))
        return self.decoder[2](F.interpolate(x, size=self.sizes[1], mode="nearest"))


class _DenseAutoencoder(nn.Module):
    def __init__(self, n_features, width, latent_channels):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_features, 4 * width),
            nn.SiLU(),
            nn.Linear(4 * width, 4 * latent_channels),
        )
        self.decoder = nn.Sequential(
            nn.Linear(4 * latent_channels, 4 * width),
            nn.SiLU(),
            nn.Linear(4 * width, n_features),
        )

    def encode(self, x):
        return self.encoder(x)

    def decode(self, code):
        return self.decoder(code)
