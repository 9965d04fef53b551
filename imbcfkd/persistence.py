"""Save fitted classifiers to files that load without running code.

``pickle`` (and ``joblib``) can run any code hidden in the file they load, so
a model shared by someone else must not be unpickled. :func:`save_model`
writes the fitted state of a :class:`~imbcfkd.CFKDClassifier` or
:class:`~imbcfkd.BaselineClassifier` (weights, optimizer state, classes,
shapes, the CFKD history and counterfactuals) as arrays and JSON in one
``.npz`` file, and :func:`load_model` reads it back into an estimator you
build yourself with the same parameters, as one rebuilds a skorch net before
``load_params``. Nothing in the file is executed; a file that would need
pickle is refused.
"""

from pathlib import Path

from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from ._serialization import describe, load_net_state, load_tree, net_state, save_tree

__all__ = ["load_model", "save_model"]

# Parameters that may differ between the saved and the loading estimator:
# they do not change what was learned.
_FREE_PARAMETERS = ("teacher", "verbose", "work_dir")


def save_model(estimator, path):
    """Write a fitted classifier's state to ``path`` (an ``.npz`` file).

    Parameters
    ----------
    estimator : CFKDClassifier or BaselineClassifier
        A fitted classifier. Its class labels must be numbers, strings or
        booleans.
    path : str or path-like
        The file to write; ``.npz`` is added when it has no suffix. An
        existing file is replaced atomically.

    Returns
    -------
    path : pathlib.Path
        The file written.

    See Also
    --------
    load_model : Read the file back.
    """
    check_is_fitted(estimator)
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".npz")
    nets = {name: getattr(estimator, name) for name in estimator._saved_nets}
    tree = {
        "estimator": type(estimator).__name__,
        "parameters": _parameters(estimator),
        "attributes": {
            name: getattr(estimator, name)
            for name in estimator._saved_attributes
            if hasattr(estimator, name)
        },
        # Nets that are the same object (base_net_ and net_ when no
        # fine-tuning was kept) are stored once and loaded as one object.
        "nets": {name: net_state(net) for name, net in _unique(nets).items()},
        "same_net": {name: _first_name(nets, net) for name, net in nets.items()},
    }
    save_tree(tree, path)
    return path


def load_model(path, estimator):
    """Read a classifier saved by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like
        The file :func:`save_model` wrote.
    estimator : CFKDClassifier or BaselineClassifier
        An estimator of the saved class with the saved parameters (the
        ``teacher`` and ``verbose`` may differ); it is cloned, not changed.
        Its ``net`` tells how to rebuild the network the weights belong to.

    Returns
    -------
    estimator : CFKDClassifier or BaselineClassifier
        A fitted clone of ``estimator``, ready for ``predict``. The fitted
        explainer of a CFKD classifier (``explainer_``) and the fitted
        sampler of a baseline (``sampler_``) are not saved; ``sampler_`` is
        ``None`` after loading.

    Raises
    ------
    ValueError
        When the file was not written by :func:`save_model`, would need
        pickle, or was saved from another class or other parameters.
    """
    tree = load_tree(path)
    if not isinstance(tree, dict) or "estimator" not in tree:
        raise ValueError(f"{path} was not written by imbcfkd.save_model.")
    if tree["estimator"] != type(estimator).__name__:
        raise ValueError(
            f"{path} holds a {tree['estimator']}; pass an unfitted "
            f"{tree['estimator']} with the same parameters, not a "
            f"{type(estimator).__name__}."
        )
    differs = sorted(
        name
        for name in set(tree["parameters"]) | set(_parameters(estimator))
        if tree["parameters"].get(name) != _parameters(estimator).get(name)
    )
    if differs:
        raise ValueError(
            f"{path} was saved from a {tree['estimator']} with other values of "
            f"{differs}. Build the estimator with the parameters it was fitted "
            "with."
        )

    fitted = clone(estimator)
    for name, value in tree["attributes"].items():
        setattr(fitted, name, value)
    loaded = {
        name: load_net_state(fitted._make_net(), state)
        for name, state in tree["nets"].items()
    }
    for name, first in tree["same_net"].items():
        setattr(fitted, name, loaded[first])
    if "sampler" in fitted.get_params(deep=False):
        fitted.sampler_ = None
    return fitted


def _parameters(estimator):
    params = estimator.get_params(deep=False)
    for name in _FREE_PARAMETERS:
        params.pop(name, None)
    return describe(params)


def _unique(nets):
    unique = {}
    for name, net in nets.items():
        if _first_name(nets, net) == name:
            unique[name] = net
    return unique


def _first_name(nets, net):
    return next(name for name, other in nets.items() if other is net)
