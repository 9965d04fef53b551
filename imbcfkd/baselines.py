"""The usual cures for class imbalance, as classifiers to compare CFKD with.

:class:`BaselineClassifier` trains the same skorch net as
:class:`imbcfkd.CFKDClassifier` with one of the common remedies for a rare
class: plain cross-entropy, class-balanced mini-batches, the focal loss,
class-weighted cross-entropy, or an imbalanced-learn sampler applied to the
images. Only the method differs; the architecture, epochs, learning rate and
batch size come from the same ``net``, so a comparison isolates the method.
"""

from numbers import Real

import numpy as np
import torch
from imblearn.over_sampling import RandomOverSampler
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from torch import nn
from torch.utils.data import DataLoader

from ._base import _NetClassifierMixin, _seeded_torch
from .losses import FocalLoss
from .sampling import BalancedBatchLoader, ImageResampler

__all__ = ["METHODS", "BaselineClassifier"]

#: The remedies :class:`BaselineClassifier` implements.
METHODS = (
    "cross_entropy",
    "batch_balancing",
    "focal_loss",
    "class_weight",
    "resampling",
)


class BaselineClassifier(_NetClassifierMixin, ClassifierMixin, BaseEstimator):
    """An image classifier trained with a common remedy for class imbalance.

    The same network as in :class:`imbcfkd.CFKDClassifier`, trained on all
    of the data with one of:

    - ``"cross_entropy"``: shuffled mini-batches and cross-entropy (CE);
    - ``"batch_balancing"``: every mini-batch holds each class equally often,
      the rare class recycled (CE+BB, the base classifier of CFKD);
    - ``"focal_loss"``: shuffled mini-batches and the focal loss;
    - ``"class_weight"``: shuffled mini-batches and cross-entropy weighted by
      ``n_samples / (n_classes * n_samples_of_class)``;
    - ``"resampling"``: the training images are resampled by ``sampler`` (an
      imbalanced-learn sampler, random over-sampling by default), then CE
      with shuffled mini-batches.

    Parameters
    ----------
    method : {"cross_entropy", "batch_balancing", "focal_loss", \
"class_weight", "resampling"}, default="batch_balancing"
        The remedy.
    net : skorch.NeuralNetClassifier, default=None
        The classifier to train; it is cloned, never modified. Its training
        iterator and criterion are replaced by the method's; everything else
        (module, epochs, optimizer, learning rate, batch size, device) is
        used as it is. Its module's ``input_shape`` and ``n_classes`` are
        set from the data when it accepts them. ``None`` builds
        :func:`imbcfkd.networks.make_net` with a
        :class:`~imbcfkd.networks.SmallResNet` for images and an
        :class:`~imbcfkd.networks.MLP` for feature vectors, as
        :class:`~imbcfkd.CFKDClassifier` does.
    sampler : imbalanced-learn sampler, default=None
        Used by ``method="resampling"`` only, cloned, and seeded from
        ``random_state`` when its own ``random_state`` is ``None``; samplers
        that synthesise images (SMOTE) interpolate pixel by pixel. ``None``
        uses :class:`imblearn.over_sampling.RandomOverSampler`.
    focal_gamma : float, default=2.0
        Focusing parameter of the focal loss (``method="focal_loss"``).
    input_shape : tuple of int, default=None
        Shape of one image when ``X`` holds flattened images, e.g.
        ``(3, 16, 16)`` for 768 features. ``None`` takes 4-D ``X`` as images
        and 2-D ``X`` as plain feature vectors.
    random_state : int, RandomState instance or None, default=None
        Seeds the sampler and PyTorch (weight initialisation and batch order)
        for the duration of ``fit``, without changing PyTorch's global random
        state.
    verbose : int, default=0
        1 reports the training set after resampling.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels.
    n_features_in_ : int
        Number of values in one sample (channels x height x width for images).
    feature_names_in_ : ndarray of str
        Names of the features, when ``X`` is a DataFrame with string column
        names.
    input_shape_ : tuple of int
        Shape of one sample as the network sees it.
    net_ : skorch.NeuralNetClassifier
        The trained net.
    sampler_ : imbalanced-learn sampler or None
        The fitted sampler, for ``method="resampling"``.
    class_weight_ : ndarray of shape (n_classes,) or None
        Weight of each class in the loss, for ``method="class_weight"``.
    n_training_samples_ : int
        Samples the net was trained on, after resampling.

    See Also
    --------
    imbcfkd.CFKDClassifier : Corrects the batch-balanced classifier with
        counterfactuals judged by a teacher.
    imbcfkd.networks.make_net : Build the skorch net.

    Examples
    --------
    >>> import numpy as np
    >>> from imblearn.over_sampling import SMOTE
    >>> from imbcfkd import BaselineClassifier, make_net
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(120, 4)).astype("float32")
    >>> y = (X[:, 0] > 0.8).astype(int)
    >>> clf = BaselineClassifier(
    ...     "resampling", net=make_net("mlp", max_epochs=3),
    ...     sampler=SMOTE(k_neighbors=3), random_state=0,
    ... ).fit(X, y)
    >>> clf.n_training_samples_, np.bincount(y).tolist()
    (184, [92, 28])
    """

    _saved_attributes = _NetClassifierMixin._saved_attributes + (
        "class_weight_",
        "n_training_samples_",
    )

    _parameter_constraints = {
        "method": [StrOptions(set(METHODS))],
        "net": [HasMethods(["fit", "predict_proba"]), None],
        "sampler": [HasMethods(["fit_resample"]), None],
        "focal_gamma": [Interval(Real, 0, None, closed="left")],
        "input_shape": [tuple, list, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        method="batch_balancing",
        *,
        net=None,
        sampler=None,
        focal_gamma=2.0,
        input_shape=None,
        random_state=None,
        verbose=0,
    ):
        self.method = method
        self.net = net
        self.sampler = sampler
        self.focal_gamma = focal_gamma
        self.input_shape = input_shape
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train the net with the chosen remedy.

        Parameters
        ----------
        X : array-like of shape (n_samples, channels, height, width) or \
(n_samples, n_features)
            Training images, or flattened images with ``input_shape`` set, or
            feature vectors. Values must be finite.
        y : array-like of shape (n_samples,)
            Class labels of any type; at least two classes.

        Returns
        -------
        self : BaselineClassifier
            The fitted classifier.
        """
        self._validate_params()
        X, y = self._validate_training_data(X, y)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))

        self.sampler_ = None
        if self.method == "resampling":
            sampler = RandomOverSampler() if self.sampler is None else self.sampler
            sampler = clone(sampler)
            if sampler.get_params().get("random_state", 0) is None:
                sampler.set_params(random_state=seed)
            resampler = ImageResampler(sampler)
            X, y = resampler.fit_resample(X, y)
            self.sampler_ = resampler.sampler_
            self._log(
                f"{type(sampler).__name__} gave {len(y)} samples, "
                f"{np.bincount(y).tolist()} per class."
            )
        self.n_training_samples_ = len(y)

        counts = np.bincount(y, minlength=len(self.classes_))
        self.class_weight_ = None
        if self.method == "class_weight":
            if np.any(counts == 0):
                raise ValueError(
                    "method='class_weight' needs every class in y; class "
                    f"{self.classes_[counts == 0].tolist()} has no sample."
                )
            self.class_weight_ = len(y) / (len(counts) * counts.astype(np.float64))

        net = self._make_net()
        with _seeded_torch(seed):
            self.net_ = net.fit(X, y)
        return self

    def _make_net(self):
        net = super()._make_net()
        return net.set_params(**self._method_params())

    def _method_params(self):
        """The net's training iterator and criterion for ``method``."""
        if self.method == "batch_balancing":
            # The balanced loader owns the order: shuffle must stay off.
            params = {
                "iterator_train": BalancedBatchLoader,
                "iterator_train__shuffle": False,
            }
        else:
            params = {"iterator_train": DataLoader, "iterator_train__shuffle": True}
        if self.method == "focal_loss":
            params.update(criterion=FocalLoss, criterion__gamma=self.focal_gamma)
        else:
            params["criterion"] = nn.CrossEntropyLoss
        if self.method == "class_weight":
            params["criterion__weight"] = torch.as_tensor(
                self.class_weight_, dtype=torch.float32
            )
        return params
