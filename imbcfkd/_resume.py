"""The working folder of a resumable CFKD run.

A run is split into stages: the split, the base classifier, and in each round
the counterfactuals, every answer of the teacher, and the fine-tuned
classifier. :meth:`RunFolder.stage` computes a stage once and writes its
result, with the random states after it, to the folder; a later run on the
same data and parameters loads the result and the random states instead of
computing again, so a resumed fit asks the teacher only what it has not
answered yet and ends exactly as the uninterrupted fit would have.

Everything is stored with :mod:`imbcfkd._serialization` (arrays and JSON):
loading a folder never executes code from it.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ._serialization import load_tree, save_tree

RUN_FILE = "run.json"
STAGES_FOLDER = "stages"


def fingerprint(*parts):
    """A short hash of arrays and JSON-able values, in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str((part.dtype.str, part.shape)).encode("ascii"))
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


class RunFolder:
    """A working folder of one fit: the stages done so far.

    Parameters
    ----------
    path : str or path-like or None
        The folder; created when missing. ``None`` keeps nothing: every stage
        is computed and no answer is stored.
    run : dict
        What identifies the run: ``{"data": ..., "parameters": ...}`` hashes.
        A folder made by another run raises ``ValueError``.
    """

    def __init__(self, path, run):
        self.path = None if path is None else Path(path)
        self.n_done = 0
        if self.path is None:
            return
        (self.path / STAGES_FOLDER).mkdir(parents=True, exist_ok=True)
        run_file = self.path / RUN_FILE
        if run_file.exists():
            stored = json.loads(run_file.read_text(encoding="utf-8"))
            differs = [key for key in run if stored.get(key) != run[key]]
            if differs:
                raise ValueError(
                    f"The working folder {self.path} holds a run on other "
                    f"{' and '.join(differs)} than this fit. Give a new work_dir, "
                    "or delete the folder to start this run afresh."
                )
            self.n_done = len(list((self.path / STAGES_FOLDER).glob("*.npz")))
        else:
            run_file.write_text(json.dumps(run, indent=1), encoding="utf-8")

    def stage(self, name, rng, compute, encode=None, decode=None, torch_state=True):
        """The result of ``compute()``, from the folder when it was saved there.

        ``encode`` turns the result into a tree that
        :func:`~imbcfkd._serialization.save_tree` can write, ``decode`` turns
        that tree back into the result. After a load, ``rng`` (a NumPy
        ``RandomState``) and, with ``torch_state``, PyTorch's random state
        are as ``compute`` left them.
        """
        if self.path is None:
            return compute()
        path = self.path / STAGES_FOLDER / f"{name}.npz"
        if path.exists():
            tree = load_tree(path)
            result = tree["result"] if decode is None else decode(tree["result"])
            rng.set_state(tree["numpy_random_state"])
            if torch_state:
                torch.set_rng_state(tree["torch_random_state"])
            return result
        result = compute()
        tree = {
            "result": result if encode is None else encode(result),
            "numpy_random_state": rng.get_state(),
            "torch_random_state": torch.get_rng_state(),
        }
        save_tree(tree, path)
        return result
