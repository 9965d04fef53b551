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
"""

from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

__all__ = ["GradientExplainer"]


class GradientExplainer(BaseEstimator):
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

    Examples
    --------
    >>> import numpy as np
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
        X = np.asarray(X, dtype=np.float32)
        axes = tuple(i for i in range(X.ndim) if i != 1)
        self.data_min_ = X.min(axis=axes)
        self.data_max_ = X.max(axis=axes)
        return self

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
            The first perturbed sample that reached the target, or the last
            attempt for samples that never did.
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
                batch_cf, batch_reached = self._explain_batch(
                    module,
                    torch.from_numpy(X[start:stop]).to(device),
                    torch.from_numpy(target[start:stop]).to(device),
                )
                counterfactuals[start:stop] = batch_cf.cpu().numpy()
                reached[start:stop] = batch_reached.cpu().numpy()
        finally:
            module.train(was_training)
        return counterfactuals, reached

    def _explain_batch(self, module, x, target):
        is_image = x.dim() == 4
        if is_image and self.smoothing > 1:
            low_shape = [-(-side // self.smoothing) for side in x.shape[2:]]
        else:
            low_shape = list(x.shape[2:]) if is_image else []
        delta_low = torch.zeros(
            (x.shape[0], x.shape[1], *low_shape), device=x.device, requires_grad=True
        )
        optimizer = torch.optim.Adam([delta_low], lr=self.step_size)
        low, high = self._bounds(x)

        best = x.clone()
        reached = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps + 1):
            delta = delta_low
            if is_image and self.smoothing > 1:
                delta = F.interpolate(
                    delta_low, size=x.shape[2:], mode="bilinear", align_corners=False
                )
            candidate = x + delta
            if low is not None:
                candidate = torch.maximum(torch.minimum(candidate, high), low)
            logits = module(candidate)

            # Keep the first candidate of each sample that reaches its target.
            newly = (logits.argmax(dim=1) == target) & ~reached
            best[newly] = candidate[newly].detach()
            reached |= newly
            if bool(reached.all()):
                break
            best[~reached] = candidate[~reached].detach()

            active = (~reached).float()
            loss_per_sample = F.cross_entropy(
                logits, target, reduction="none"
            ) + self.closeness * delta.abs().flatten(1).mean(dim=1)
            loss = (loss_per_sample * active).sum()
            (delta_low.grad,) = torch.autograd.grad(loss, delta_low)
            optimizer.step()
        return best, reached

    def _bounds(self, x):
        if not hasattr(self, "data_min_"):
            return None, None
        shape = (1, -1) + (1,) * (x.dim() - 2)
        low = torch.as_tensor(self.data_min_, device=x.device).view(shape)
        high = torch.as_tensor(self.data_max_, device=x.device).view(shape)
        return low, high
