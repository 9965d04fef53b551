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
    classifier itself, so ``reached`` only serves diagnostics.

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
"""

import copy
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from torch import nn

__all__ = ["AutoencoderExplainer", "GradientExplainer"]


class _SearchExplainer(BaseEstimator):
    """Shared machinery: value range, batching, and the per-sample search.

    Subclasses define ``_start(x)``, which returns the variable to optimise
    (one row per sample of ``x``) and a function ``to_candidate(rows_of_variable,
    rows)`` mapping the given rows of it to candidate images of ``x[rows]``
    and the change they make.
    """

    def _fit_range(self, X):
        X = np.asarray(X, dtype=np.float32)
        axes = tuple(i for i in range(X.ndim) if i != 1)
        self.data_min_ = X.min(axis=axes)
        self.data_max_ = X.max(axis=axes)

    def explain(self, net, X, target):
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

        Returns
        -------
        counterfactuals : ndarray of float32, same shape as X
            The first candidate that reached the target, or the last attempt
            for samples that never did.
        reached : ndarray of bool, shape (n,)
            Whether each counterfactual reached its target.
        """
        self._validate_params()
        module = net.module_
        device = next(module.parameters()).device
        X = np.asarray(X, dtype=np.float32)
        target = np.asarray(target, dtype=np.int64)
        counterfactuals = np.empty_like(X)
        reached = np.zeros(len(X), dtype=bool)

        starts = range(0, len(X), self.batch_size)
        if self.verbose:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="counterfactuals", unit="batch")
        was_training = module.training
        module.eval()
        try:
            for start in starts:
                stop = start + self.batch_size
                x = torch.from_numpy(X[start:stop]).to(device)
                variable, to_candidate = self._start(x)
                batch_cf, batch_reached = self._search(
                    module,
                    variable,
                    to_candidate,
                    torch.from_numpy(target[start:stop]).to(device),
                )
                counterfactuals[start:stop] = batch_cf.cpu().numpy()
                reached[start:stop] = batch_reached.cpu().numpy()
        finally:
            module.train(was_training)
        return counterfactuals, reached

    def _search(self, module, variable, to_candidate, target):
        """Optimise ``variable`` until each sample's candidate reaches its target.

        The loss is the cross-entropy towards the target plus ``closeness``
        times the mean absolute change of the candidate. Only the samples
        still searching go through the net, so a batch gets cheaper as its
        samples succeed.
        """
        optimizer = torch.optim.Adam([variable], lr=self.step_size)
        reached = torch.zeros(len(target), dtype=torch.bool, device=target.device)
        best = None
        for _ in range(self.steps + 1):
            active = torch.nonzero(~reached).squeeze(1)
            n_active = len(active)
            # Pad to a power of two with finished samples (whose results are
            # ignored): few distinct tensor sizes keep the memory allocator
            # from fragmenting, so memory stays flat over many batches.
            n_rows = min(len(target), 1 << (n_active - 1).bit_length())
            done = torch.nonzero(reached).squeeze(1)[: n_rows - n_active]
            rows = torch.cat([active, done])
            candidate, change = to_candidate(variable[rows], rows)
            logits = module(candidate)[:n_active]
            candidate, change = candidate[:n_active], change[:n_active]
            if best is None:
                best = candidate.detach().clone()

            # Keep the first candidate of each sample that reaches its target,
            # and the latest one of each sample that has not (yet).
            best[active] = candidate.detach()
            newly = logits.argmax(dim=1) == target[active]
            reached[active[newly]] = True
            if bool(reached.all()):
                break

            loss = F.cross_entropy(logits, target[active], reduction="none")
            loss = loss + self.closeness * change.abs().flatten(1).mean(dim=1)
            loss = loss[~newly].sum()
            (variable.grad,) = torch.autograd.grad(loss, variable)
            optimizer.step()
        return best, reached

    def _clip(self, x):
        """Clip to the value range seen in ``fit``, when there was a fit."""
        if not hasattr(self, "data_min_"):
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        low = torch.as_tensor(self.data_min_, device=x.device).view(shape)
        high = torch.as_tensor(self.data_max_, device=x.device).view(shape)
        return torch.maximum(torch.minimum(x, high), low)


class GradientExplainer(_SearchExplainer):
    """Gradient search for a smooth, small perturbation that flips a net.

    The perturbation is optimised at a reduced resolution and upsampled
    bilinearly, which keeps it low-frequency (a colour cast, a blob) rather
    than adversarial pixel noise. The loss is the cross-entropy towards the
    target class plus an L1 closeness penalty on the perturbation. All
    samples of a batch are optimised together; each keeps the first
    perturbation that reaches its target.

    Parameters
    ----------
    steps : int, default=60
        Optimisation steps per batch.
    step_size : float, default=0.05
        Learning rate of the Adam optimiser over the perturbation.
    closeness : float, default=0.1
        Weight of the L1 penalty on the perturbation.
    smoothing : int, default=4
        Downsampling factor of the perturbation: ``4`` optimises a 4x4
        image for a 16x16 input. ``1`` perturbs every pixel freely. Ignored
        for feature vectors.
    batch_size : int, default=256
        Samples optimised together; memory grows with it, not with the
        number of samples.
    verbose : int, default=0
        Show a progress bar over batches when positive.

    Attributes
    ----------
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
        "smoothing": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        steps=60,
        step_size=0.05,
        closeness=0.1,
        smoothing=4,
        batch_size=256,
        verbose=0,
    ):
        self.steps = steps
        self.step_size = step_size
        self.closeness = closeness
        self.smoothing = smoothing
        self.batch_size = batch_size
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
        smooth = x.dim() == 4 and self.smoothing > 1
        shape = list(x.shape)
        if smooth:
            shape[2:] = [-(-side // self.smoothing) for side in x.shape[2:]]
        delta = torch.zeros(shape, device=x.device, requires_grad=True)

        def to_candidate(delta, rows):
            if smooth:
                delta = F.interpolate(
                    delta, size=x.shape[2:], mode="bilinear", align_corners=False
                )
            return self._clip(x[rows] + delta), delta

        return delta, to_candidate


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
    batch_size : int, default=256
        Images per batch, for training and for the search.
    random_state : int, RandomState instance or None, default=None
        Seeds the autoencoder's initialisation and batch order. ``None``
        uses PyTorch's global generator.
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
        generator = torch.Generator()
        if self.random_state is None:
            generator.manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))
        else:
            generator.manual_seed(
                int(check_random_state(self.random_state).randint(2**31 - 1))
            )

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

        def to_candidate(delta, rows):
            change = autoencoder.decode(code[rows] + delta) - decoded[rows]
            return self._clip(x[rows] + change), change

        return delta, to_candidate


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
