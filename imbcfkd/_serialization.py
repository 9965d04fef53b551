"""Files that load without running code: arrays in ``.npz``, the rest in JSON.

A *tree* is any nesting of dicts, lists and tuples whose leaves are ``None``,
booleans, numbers, strings, NumPy arrays and PyTorch tensors. :func:`save_tree`
writes one to a single ``.npz`` file: every array and tensor as an array of
its own, and the structure as JSON text. :func:`load_tree` reads it back with
``allow_pickle=False``, so a file from an untrusted source can hold data but
never code; a file that is not of this form raises ``ValueError``.

Writes are atomic: the file appears complete under its name, or not at all.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

_STRUCTURE_KEY = "__structure__"
_FORMAT = "imbcfkd-tree-1"


def save_tree(tree, path):
    """Write ``tree`` to the ``.npz`` file ``path``, atomically."""
    arrays = {}
    structure = {"format": _FORMAT, "tree": _encode(tree, arrays)}
    text = json.dumps(structure, allow_nan=True)
    arrays[_STRUCTURE_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    with atomic_write(path) as handle:
        np.savez(handle, **arrays)


def load_tree(path):
    """Read a tree written by :func:`save_tree`; no code is ever executed."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:
        raise ValueError(
            f"{path} holds data that would need pickle to load (object arrays); "
            "imbcfkd never unpickles files. Write it again with imbcfkd."
        ) from error
    if _STRUCTURE_KEY not in arrays:
        raise ValueError(f"{path} is not a file written by imbcfkd.")
    structure = json.loads(arrays.pop(_STRUCTURE_KEY).tobytes().decode("utf-8"))
    if not isinstance(structure, dict) or structure.get("format") != _FORMAT:
        raise ValueError(
            f"{path} has an unknown format {structure.get('format')!r}; expected "
            f"{_FORMAT!r}."
        )
    return _decode(structure["tree"], arrays, path)


class atomic_write:
    """Open a temporary binary file that replaces ``path`` once closed cleanly.

    A crash while writing leaves the old file (or none) in place, never a
    partial one.
    """

    def __init__(self, path):
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, self._temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        self._handle = os.fdopen(descriptor, "wb")
        return self._handle

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            self._handle.close()
            if kind is None:
                os.replace(self._temporary, self.path)
        finally:
            if os.path.exists(self._temporary):
                os.unlink(self._temporary)
        return False


def net_state(net):
    """The weights and optimizer state of an initialised skorch net, as a tree."""
    return {
        "module": net.module_.state_dict(),
        "optimizer": net.optimizer_.state_dict(),
    }


def load_net_state(net, state):
    """Initialise ``net`` and load a tree made by :func:`net_state` into it."""
    net.initialize()
    # The tree holds tensors where the state had them: it loads as it is.
    net.module_.load_state_dict(state["module"])
    net.optimizer_.load_state_dict(state["optimizer"])
    return net


def _encode(value, arrays):
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, np.generic):
        return _encode(value.item(), arrays)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            raise ValueError("bfloat16 tensors cannot be saved; convert to float32.")
        key = f"a{len(arrays)}"
        arrays[key] = value.numpy()
        return {"tensor": key}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {
                "objects": [_encode(v, arrays) for v in value.reshape(-1).tolist()],
                "shape": list(value.shape),
            }
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"array": key}
    if isinstance(value, dict):
        pairs = [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]
        return {"dict": pairs}
    if isinstance(value, list):
        return {"list": [_encode(v, arrays) for v in value]}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, arrays) for v in value]}
    raise TypeError(
        f"Cannot save a value of type {type(value).__name__}: imbcfkd saves only "
        "None, booleans, numbers, strings, arrays, tensors and lists, tuples and "
        "dicts of them."
    )


def _decode(value, arrays, path):
    if not isinstance(value, dict):
        return value
    if "array" in value or "tensor" in value:
        key = value.get("array", value.get("tensor"))
        if key not in arrays:
            raise ValueError(f"{path} refers to an array {key!r} it does not hold.")
        array = arrays[key]
        return torch.from_numpy(array.copy()) if "tensor" in value else array
    if "objects" in value:
        objects = np.empty(len(value["objects"]), dtype=object)
        objects[:] = [_decode(v, arrays, path) for v in value["objects"]]
        return objects.reshape(value["shape"])
    if "dict" in value:
        return {
            _decode(k, arrays, path): _decode(v, arrays, path) for k, v in value["dict"]
        }
    if "list" in value:
        return [_decode(v, arrays, path) for v in value["list"]]
    if "tuple" in value:
        return tuple(_decode(v, arrays, path) for v in value["tuple"])
    raise ValueError(f"{path} holds an entry of unknown kind: {sorted(value)}.")


def describe(value):
    """A JSON-able summary of a parameter value, to compare two settings.

    Estimators are described by their class and parameters, classes and
    functions by their qualified name, other objects by their type.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if hasattr(value, "get_params"):
        return {"class": kind, "params": describe(value.get_params(deep=False))}
    return kind
