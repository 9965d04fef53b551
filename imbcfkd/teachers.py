"""Teachers: who tells CFKD the true class of a counterfactual.

A teacher is any callable ``teacher(X) -> labels`` that takes a batch of
images (in the same format as the ``X`` given to
:meth:`imbcfkd.CFKDClassifier.fit`) and returns one label per image, in the
user's own label space. Where the teacher cannot tell (the image is out of
distribution, or too ambiguous to judge), it returns
:data:`OUT_OF_DISTRIBUTION` for that image, and CFKD discards it.

A teacher whose signature has a parameter named ``originals`` is called as
``teacher(X, originals=sources)`` when ``X`` holds counterfactuals, with the
image each was made from, so that it can show the two side by side.

In practice the teacher is a domain expert, asked on a local web page by
:class:`imbcfkd.HumanTeacher`; in experiments it is an oracle, a classifier
trained on well-conditioned data, wrapped by :class:`OracleTeacher`.
"""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["OUT_OF_DISTRIBUTION", "OracleTeacher", "is_out_of_distribution"]

#: The label a teacher returns for an image it cannot judge.
OUT_OF_DISTRIBUTION = "out_of_distribution"


def is_out_of_distribution(labels):
    """Boolean mask of the labels that say :data:`OUT_OF_DISTRIBUTION`.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Labels returned by a teacher.

    Returns
    -------
    mask : ndarray of bool, shape (n_samples,)
    """
    return np.array(
        [isinstance(v, str) and v == OUT_OF_DISTRIBUTION for v in labels], dtype=bool
    )


class OracleTeacher:
    """A teacher that asks a fitted classifier, optionally with noise.

    Parameters
    ----------
    classifier : fitted classifier
        Any object with ``predict`` (and ``predict_proba`` when
        ``min_confidence`` is set) and a ``classes_`` attribute, e.g. a
        :class:`imbcfkd.CFKDClassifier` or a scikit-learn pipeline trained on
        balanced data in which the shortcut is independent of the class.
    min_confidence : float, default=None
        Answer :data:`OUT_OF_DISTRIBUTION` when the classifier's largest
        predicted probability is below this value. ``None`` always answers.
    flip_probability : float, default=0.0
        Probability of replacing an answer by another class, to simulate the
        mistakes of a human teacher.
    random_state : int, RandomState instance or None, default=None
        Seed of the noise.

    Notes
    -----
    ``OracleTeacher`` deliberately has no ``get_params``: scikit-learn's
    ``clone`` then copies it whole, fitted classifier included, instead of
    re-creating an unfitted one.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from imbcfkd import OracleTeacher
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> oracle = LogisticRegression().fit(X, ["a", "a", "b", "b"])
    >>> OracleTeacher(oracle)(np.array([[0.2], [2.8]])).tolist()
    ['a', 'b']
    """

    def __init__(
        self, classifier, min_confidence=None, flip_probability=0.0, random_state=None
    ):
        self.classifier = classifier
        self.min_confidence = min_confidence
        self.flip_probability = flip_probability
        self.random_state = random_state
        self._rng = None

    def __call__(self, X):
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(
                f"flip_probability must be in [0, 1]; got {self.flip_probability}."
            )
        classes = getattr(self.classifier, "classes_", None)
        if classes is None:
            raise ValueError(
                "OracleTeacher needs a fitted classifier with a classes_ attribute; "
                "fit the oracle first."
            )
        labels = np.asarray(self.classifier.predict(X), dtype=object)

        if self.flip_probability > 0 and len(classes) > 1:
            if self._rng is None:
                self._rng = check_random_state(self.random_state)
            flip = self._rng.random_sample(len(labels)) < self.flip_probability
            for i in np.flatnonzero(flip):
                others = [c for c in classes if c != labels[i]]
                labels[i] = others[self._rng.randint(len(others))]

        if self.min_confidence is not None:
            confidence = np.max(self.classifier.predict_proba(X), axis=1)
            labels[confidence < self.min_confidence] = OUT_OF_DISTRIBUTION
        return labels
