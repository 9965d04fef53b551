"""Losses for imbalanced classification, usable as skorch criteria."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FocalLoss", "softmax"]


class FocalLoss(nn.Module):
    """Focal loss on logits, for single-label classification.

    The cross-entropy of each sample is scaled by ``(1 - p_t) ** gamma``, where
    ``p_t`` is the predicted probability of the true class, so that samples
    the classifier already gets right weigh less.

    Parameters
    ----------
    gamma : float, default=2.0
        Focusing parameter; 0 gives plain cross-entropy.
    alpha : sequence of float, default=None
        Weight of each class, indexed by the encoded class. ``None`` weighs
        all classes equally.
    reduction : {"mean", "sum", "none"}, default="mean"
        How the per-sample losses are combined.

    Notes
    -----
    skorch only applies a softmax in ``predict_proba`` when the criterion is
    ``CrossEntropyLoss``. With this loss, set
    ``predict_nonlinearity=imbcfkd.losses.softmax`` (as
    :func:`imbcfkd.networks.make_net` does), so that probabilities sum to one.

    Examples
    --------
    >>> import torch
    >>> from imbcfkd.losses import FocalLoss
    >>> logits = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    >>> loss = FocalLoss(gamma=0.0)(logits, torch.tensor([0, 1]))
    >>> bool(torch.isclose(loss, torch.nn.functional.cross_entropy(
    ...     logits, torch.tensor([0, 1]))))
    True
    """

    def __init__(self, gamma=2.0, alpha=None, reduction="mean"):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be non-negative; got {gamma}.")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(
                f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}."
            )
        self.gamma = gamma
        self.reduction = reduction
        alpha = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        self.register_buffer("alpha", alpha)

    def forward(self, logits, target):
        log_p = F.log_softmax(logits, dim=1)
        log_p_true = log_p.gather(1, target.view(-1, 1)).squeeze(1)
        loss = -((1.0 - log_p_true.exp()) ** self.gamma) * log_p_true
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


def softmax(logits):
    """Softmax over the class dimension, as skorch's ``predict_nonlinearity``.

    A module-level function rather than a lambda, so that nets using it can be
    pickled.
    """
    return torch.softmax(logits, dim=1)
