"""Input handling shared by the estimators that wrap a skorch net."""

import inspect
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .networks import make_net


class _NetClassifierMixin:
    """Validation, layout and prediction for classifiers around a skorch net.

    Subclasses set ``net_`` in ``fit`` and have ``net``, ``input_shape`` and
    ``verbose`` parameters. Labels are encoded to ``0 .. n_classes - 1``
    internally and decoded through ``classes_``; samples are reshaped to
    ``input_shape_`` for the net and back to the user's layout.
    """

    # What imbcfkd.persistence saves of a fitted classifier.
    _saved_attributes = (
        "classes_",
        "n_features_in_",
        "feature_names_in_",
        "input_shape_",
        "_user_shape",
    )
    _saved_nets = ("net_",)

    def predict(self, X):
        """Predict the class of each sample.

        Parameters
        ----------
        X : array-like, same layout as in ``fit``
            Samples to classify.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels, from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_proba(self, X):
        """Predict class probabilities.

        Parameters
        ----------
        X : array-like, same layout as in ``fit``
            Samples to classify.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``; rows sum to one.
        """
        check_is_fitted(self)
        X = self._validate_prediction_data(X)
        return self.net_.predict_proba(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        tags.input_tags.allow_nan = False
        return tags

    def _validate_training_data(self, X, y):
        X, y = validate_data(
            self, X, y, allow_nd=True, dtype=np.float32, ensure_all_finite=True
        )
        check_classification_targets(y)
        self.classes_, y = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least two classes; y "
                f"holds one class only ({self.classes_.tolist()[0]!r})."
            )
        self._user_shape = X.shape[1:]
        self.n_features_in_ = int(np.prod(self._user_shape))
        if self.input_shape is not None:
            self.input_shape_ = tuple(int(s) for s in self.input_shape)
            if int(np.prod(self.input_shape_)) != self.n_features_in_:
                raise ValueError(
                    f"input_shape={self.input_shape_} holds "
                    f"{int(np.prod(self.input_shape_))} values, but each sample "
                    f"of X has {self.n_features_in_}."
                )
        else:
            self.input_shape_ = tuple(self._user_shape)
        if len(self.input_shape_) not in (1, 3):
            raise ValueError(
                "X must hold images of shape (n_samples, channels, height, width) "
                f"or vectors of shape (n_samples, n_features); got X of shape "
                f"{X.shape}. Add a channel axis to grey images with X[:, None]."
            )
        return self._to_internal(X), y.astype(np.int64)

    def _validate_prediction_data(self, X):
        checked = check_array(X, allow_nd=True, dtype=np.float32)
        if checked.ndim == 2:
            # The raw input, so that DataFrame column names are checked too.
            return self._to_internal(
                validate_data(self, X, reset=False, dtype=np.float32)
            )
        if checked.shape[1:] not in (tuple(self._user_shape), tuple(self.input_shape_)):
            raise ValueError(
                f"X has samples of shape {checked.shape[1:]}, but "
                f"{type(self).__name__} was fitted on samples of shape "
                f"{tuple(self._user_shape)}."
            )
        return self._to_internal(checked)

    def _to_internal(self, X):
        # PyTorch cannot wrap read-only arrays (e.g. from a DataFrame) safely.
        X = np.require(X, requirements="W")
        return X.reshape((len(X),) + tuple(self.input_shape_))

    def _to_user(self, X):
        return X.reshape((len(X),) + tuple(self._user_shape))

    def _make_net(self):
        """Clone ``net`` (or build the default) and size it to the data."""
        if self.net is None:
            architecture = "resnet" if len(self.input_shape_) == 3 else "mlp"
            net = make_net(architecture)
        else:
            net = clone(self.net)
        module = net.module
        if isinstance(module, type):
            accepted = inspect.signature(module).parameters
            if "input_shape" in accepted:
                net.set_params(module__input_shape=tuple(self.input_shape_))
            if "n_classes" in accepted:
                net.set_params(module__n_classes=len(self.classes_))
        return net

    def _log(self, message):
        if self.verbose:
            print(f"[{type(self).__name__}] {message}")


@contextmanager
def _seeded_torch(seed):
    """Seed PyTorch inside the block and restore its random state after."""
    # torch.manual_seed seeds every CUDA device, so all of them are restored.
    devices = (
        list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
