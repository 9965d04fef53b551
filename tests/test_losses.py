"""Focal loss."""

import pickle

import pytest
import torch
import torch.nn.functional as F

from imbcfkd.losses import FocalLoss


def test_focal_loss_without_focusing_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(10, 3), torch.randint(0, 3, (10,))
    assert torch.isclose(
        FocalLoss(gamma=0)(logits, target), F.cross_entropy(logits, target)
    )


def test_focal_loss_down_weights_easy_samples():
    logits = torch.tensor([[4.0, -4.0], [0.1, 0.0]])
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    focal = FocalLoss(gamma=2.0, reduction="none")(logits, target)
    ratio = focal / ce
    # p_t is almost one for the easy sample, about one half for the hard one.
    assert ratio[0] < 1e-6
    p_hard = torch.softmax(logits[1], 0)[0]
    assert torch.isclose(ratio[1], (1 - p_hard) ** 2)


def test_focal_loss_class_weights_and_pickling():
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    target = torch.tensor([0, 1])
    loss = FocalLoss(gamma=1.0, alpha=[1.0, 3.0], reduction="none")
    values = loss(logits, target)
    assert torch.isclose(values[1], 3 * values[0])
    restored = pickle.loads(pickle.dumps(loss))
    assert torch.equal(restored(logits, target), values)


def test_focal_loss_rejects_bad_settings():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="reduction"):
        FocalLoss(reduction="max")
