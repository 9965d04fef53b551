"""Counterfactual Knowledge Distillation as a scikit-learn classifier.

:class:`CFKDClassifier` runs the whole CFKD loop inside ``fit``: it trains a
base classifier with batch balancing, asks an explainer for counterfactuals of
correctly classified training images, asks a teacher for the true class of
each counterfactual, and fine-tunes the base classifier on the original data
mixed with the teacher-labelled counterfactuals. A counterfactual that flipped
the classifier but not the teacher exposes a shortcut; training on it, with
the teacher's label, removes the shortcut.
"""

import copy
import inspect
import os
import time
import warnings
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval

from ._base import _NetClassifierMixin, _seeded_torch
from ._resume import RunFolder, fingerprint
from ._serialization import describe, load_net_state, net_state
from .exceptions import CounterfactualWarning
from .explainers import GradientExplainer, changed_region
from .sampling import (
    ORDER_OPTIONS,
    BalancedBatchLoader,
    _allocate,
    _CyclingStream,
    dataset_indices,
)
from .teachers import is_out_of_distribution

__all__ = ["CFKDClassifier"]

# Why a counterfactual was not used for fine-tuning, in the order the
# rejection cascade checks them.
STUDENT_WRONG_ON_SOURCE = "student_wrong_on_source"
TEACHER_WRONG_ON_SOURCE = "teacher_wrong_on_source"
NOT_FLIPPED = "not_flipped"
OUT_OF_DISTRIBUTION = "out_of_distribution"
TRUE_NOT_KEPT = "true_counterfactual_not_kept"


class CFKDClassifier(_NetClassifierMixin, ClassifierMixin, BaseEstimator):
    """Image classifier corrected by Counterfactual Knowledge Distillation.

    ``fit`` runs the CFKD loop:

    1. Train a base classifier (``net``) with class-balanced mini-batches on
       all training data but a stratified validation share.
    2. Draw ``n_counterfactuals`` source images that the classifier gets
       right, alternating the classes regardless of their frequency (rare
       classes are recycled), and ask the ``explainer`` to move each to the
       most likely other class.
    3. Ask the ``teacher`` for the true class of each counterfactual, through
       a rejection cascade: a source the classifier gets wrong, a source the
       teacher gets wrong, a counterfactual that did not flip the classifier,
       and one the teacher cannot judge are all dropped, each with its reason.
       A counterfactual whose class the teacher confirms is *true*; one whose
       class the teacher keeps at the source class is *false*: it exposes a
       shortcut.
    4. Fine-tune a copy of the classifier, from its weights, on batches that
       mix original images and the kept counterfactuals (labelled by the
       teacher) in a fixed share, each part class-balanced.
    5. Keep the fine-tuned classifier only if it scores better on held-out
       data: the mean of the balanced accuracy on the validation images and
       the agreement with the teacher on counterfactuals of validation
       images.

    Later rounds explain the current classifier again and replay the
    counterfactuals of all earlier rounds.

    Parameters
    ----------
    teacher : callable, default=None
        Maps an array of images (in the format given to ``fit``) to one label
        per image, in the label space of ``y``, or
        :data:`imbcfkd.OUT_OF_DISTRIBUTION` where it cannot judge. Usually an
        :class:`imbcfkd.OracleTeacher`, or a domain expert asked through a
        :class:`imbcfkd.HumanTeacher`. A teacher with an ``originals``
        parameter is also given the image each counterfactual was made
        from. Required for fitting.
    net : skorch.NeuralNetClassifier, default=None
        The classifier to train and correct; it is cloned, never modified.
        When its module accepts ``input_shape`` and ``n_classes`` (as the
        modules of :mod:`imbcfkd.networks` do) they are set from the data.
        ``None`` builds :func:`imbcfkd.networks.make_net` with a
        :class:`~imbcfkd.networks.SmallResNet` for images and an
        :class:`~imbcfkd.networks.MLP` for feature vectors. Build it with
        ``make_net(balanced=True)`` or another class-balanced iterator for
        the base classifier of the paper.
    explainer : object, default=None
        A counterfactual explainer following the protocol of
        :mod:`imbcfkd.explainers`; it is cloned. ``None`` uses a
        :class:`~imbcfkd.explainers.GradientExplainer`.
    input_shape : tuple of int, default=None
        Shape of one image when ``X`` holds flattened images, e.g.
        ``(3, 16, 16)`` for 768 features. ``None`` takes 4-D ``X`` as images
        and 2-D ``X`` as plain feature vectors.
    n_counterfactuals : int, default=250
        Counterfactuals generated per round; the default rounds make 1000 in
        all, as in the paper. 0 skips CFKD and returns the batch-balanced
        base classifier.
    n_rounds : int, default=4
        Rounds of explanation, teaching and fine-tuning. Each round explains
        the classifier as the previous round left it, so a shortcut it falls
        back on, or a new one, is exposed again; short rounds keep it from
        memorising the counterfactuals instead of unlearning the shortcut.
    keep_true_counterfactuals : bool, default=False
        Also fine-tune on true counterfactuals (labelled with their target
        class), not only on the false ones that expose shortcuts.
    counterfactual_share : float, default=0.5
        Share of every fine-tuning batch drawn from the counterfactuals; the
        rest are original images.
    finetune_epochs : int, default=2
        Epochs of fine-tuning per round. An epoch shows each original
        training image once on average, however many counterfactuals have
        been collected.
    finetune_lr : float, default=None
        Learning rate of fine-tuning. ``None`` continues with the net's
        optimizer as it is.
    validation_fraction : float or None, default=0.2
        Share of the training data held out, stratified, to choose between
        the base and the fine-tuned classifier. ``None`` holds out nothing
        and always keeps the fine-tuned classifier.
    teacher_checks_sources : bool, default=True
        Also ask the teacher about the source images and drop those it
        labels differently from ``y``. Set to ``False`` when every teacher
        query is expensive (a human expert) and the labels are trusted.
    explore_threshold : float in (0, 1) or None, default=None
        Exploration: a source drawn more than once in a round (the rare
        class's sources are recycled) gets a different counterfactual each
        time. Its later counterfactuals may not change the region its
        earlier ones changed, as :func:`imbcfkd.explainers.changed_region`
        finds it with this threshold (higher locks less). Needs images and
        an explainer whose ``explain`` takes ``locked``, as the built-in
        ones do. ``None`` explains a recycled source the same way again.
    work_dir : str or path-like, default=None
        A working folder that makes ``fit`` resumable. Each stage (the base
        classifier, every round's counterfactuals and fine-tuned classifier)
        is saved there when done, and every teacher answer the moment the
        teacher gives it. A fit that was interrupted (a crash, Ctrl-C, a
        :class:`~imbcfkd.exceptions.AnnotationIncomplete` from a
        :class:`~imbcfkd.HumanTeacher`) and is started again with the same
        data and parameters loads what is done, asks the teacher only for
        what is missing and ends as the uninterrupted fit would have. A
        folder of another run raises ``ValueError``; ``teacher`` and
        ``verbose`` may change between the two. Files load without running
        code from them. ``None`` keeps nothing. Do not share one folder
        between the fits of a cross-validation.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the choice of sources and PyTorch (for
        weight initialisation and batch order) for the duration of ``fit``,
        without changing PyTorch's global random state.
    verbose : int, default=0
        1 reports each stage, 2 also shows the explainer's progress.

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
    base_net_ : skorch.NeuralNetClassifier
        The classifier trained with batch balancing, before any correction.
    net_ : skorch.NeuralNetClassifier
        The classifier used by ``predict``: the last accepted fine-tuned
        classifier, or ``base_net_`` when no fine-tuning helped.
    explainer_ : object
        The fitted clone of ``explainer``.
    counterfactuals_ : dict of ndarray
        One entry per generated training counterfactual, over all rounds:
        ``"round"``, ``"source_index"`` (row of the source in ``X``),
        ``"source"`` and ``"counterfactual"`` (images in the format of
        ``X``), ``"source_label"``, ``"target_label"``, ``"teacher_label"``
        (``None`` where the teacher was not asked), ``"flipped"`` (the
        classifier predicts the target on the counterfactual), ``"reached"``
        (the explainer's own claim), ``"verdict"`` (``"true"``,
        ``"false"``, ``"other"`` or ``""`` when not judged), ``"kept"`` and
        ``"reason"`` (why it was not kept, ``""`` when kept).
    history_ : list of dict
        One entry per round: ``n_counterfactuals``, ``flip_rate`` (share that
        flipped the classifier), ``n_judged``, ``feedback_accuracy`` (share of
        true counterfactuals among those judged; low values mean the
        classifier relies on shortcuts), ``n_kept``, ``n_replayed`` (kept
        counterfactuals of this and earlier rounds used for fine-tuning),
        ``score_before`` and ``score_after`` (validation scores of the
        current and the fine-tuned classifier), ``accepted``, ``seconds``
        and ``counterfactuals_per_second`` (of the explainer alone).

    See Also
    --------
    imbcfkd.networks.make_net : Build the skorch net to correct.
    imbcfkd.OracleTeacher : Use a fitted classifier as the teacher.

    Notes
    -----
    skorch's ``predict`` returns column indices; this estimator maps them
    back to ``classes_``, so labels of any type work. For more than two
    classes each source is moved to its most likely other class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from imbcfkd import CFKDClassifier, OracleTeacher
    >>> from imbcfkd.networks import make_net
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(120, 4)).astype("float32")
    >>> y = (X[:, 0] > 0.8).astype(int)
    >>> oracle = LogisticRegression().fit(X, y)
    >>> clf = CFKDClassifier(
    ...     teacher=OracleTeacher(oracle), net=make_net("mlp", max_epochs=5),
    ...     n_counterfactuals=20, finetune_epochs=2, random_state=0,
    ... ).fit(X, y)
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    _saved_attributes = _NetClassifierMixin._saved_attributes + (
        "history_",
        "counterfactuals_",
    )
    _saved_nets = ("base_net_", "net_")

    _parameter_constraints = {
        "teacher": [callable, None],
        "net": [HasMethods(["fit", "predict_proba", "partial_fit"]), None],
        "explainer": [HasMethods(["explain"]), None],
        "input_shape": [tuple, list, None],
        "n_counterfactuals": [Interval(Integral, 0, None, closed="left")],
        "n_rounds": [Interval(Integral, 0, None, closed="left")],
        "keep_true_counterfactuals": ["boolean"],
        "counterfactual_share": [Interval(Real, 0, 1, closed="neither")],
        "finetune_epochs": [Interval(Integral, 1, None, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither"), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "teacher_checks_sources": ["boolean"],
        "explore_threshold": [Interval(Real, 0, 1, closed="neither"), None],
        "work_dir": [str, os.PathLike, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        teacher=None,
        *,
        net=None,
        explainer=None,
        input_shape=None,
        n_counterfactuals=250,
        n_rounds=4,
        keep_true_counterfactuals=False,
        counterfactual_share=0.5,
        finetune_epochs=2,
        finetune_lr=None,
        validation_fraction=0.2,
        teacher_checks_sources=True,
        explore_threshold=None,
        work_dir=None,
        random_state=None,
        verbose=0,
    ):
        self.teacher = teacher
        self.net = net
        self.explainer = explainer
        self.input_shape = input_shape
        self.n_counterfactuals = n_counterfactuals
        self.n_rounds = n_rounds
        self.keep_true_counterfactuals = keep_true_counterfactuals
        self.counterfactual_share = counterfactual_share
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.validation_fraction = validation_fraction
        self.teacher_checks_sources = teacher_checks_sources
        self.explore_threshold = explore_threshold
        self.work_dir = work_dir
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train the base classifier, then correct it with CFKD.

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
        self : CFKDClassifier
            The fitted classifier.
        """
        self._validate_params()
        corrects = self._corrects()
        if self.teacher is None and corrects:
            raise ValueError(
                "CFKDClassifier needs a teacher to label counterfactuals: pass "
                "teacher=OracleTeacher(fitted_classifier) or any callable that "
                "maps images to labels. Set n_counterfactuals=0 to train only "
                "the batch-balanced base classifier."
            )
        X, y = self._validate_training_data(X, y)
        rng = check_random_state(self.random_state)
        run = self._open_work_dir(X, y)
        if run.path is not None and self.random_state in (None, np.random):
            # A resumed run restores the random state: never NumPy's global one.
            rng = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
        seed, train_rows, validation_rows = run.stage(
            "split", rng, lambda: self._draw_split(y, rng), torch_state=False
        )
        net = self._make_net()
        explainer = GradientExplainer() if self.explainer is None else self.explainer
        self.explainer_ = clone(explainer, safe=False)
        if self.verbose >= 2 and "verbose" in _explainer_params(self.explainer_):
            self.explainer_.set_params(verbose=1)

        with _seeded_torch(seed):
            X_train, y_train = X[train_rows], y[train_rows]
            validation = (None, None)
            if validation_rows is not None:
                validation = (X[validation_rows], y[validation_rows])
            if corrects:
                if hasattr(self.explainer_, "fit"):
                    self.explainer_.fit(X_train, y_train)
                self._check_explainer(net, X_train[:2], y_train[:2])

            self._log(f"Training the base classifier on {len(y_train)} samples.")
            self.base_net_ = run.stage(
                "base",
                rng,
                lambda: net.fit(X_train, y_train),
                encode=net_state,
                decode=lambda state: load_net_state(net, state),
            )
            self.net_ = self.base_net_
            # The rounds save their stages in the working folder.
            self._run = run
            try:
                self._run_rounds(X_train, y_train, validation, train_rows, rng)
            finally:
                del self._run
        return self

    def _open_work_dir(self, X, y):
        """The run's working folder (one that keeps nothing without work_dir)."""
        if self.work_dir is None:
            return RunFolder(None, {})
        params = self.get_params(deep=False)
        for name in ("teacher", "verbose", "work_dir"):
            params.pop(name)
        run = RunFolder(
            self.work_dir,
            {
                "data": fingerprint(X, y, describe(self.classes_.tolist())),
                "parameters": fingerprint(describe(params)),
            },
        )
        if run.n_done:
            self._log(f"Resuming from {self.work_dir}: {run.n_done} stages done.")
        return run

    # -- the CFKD loop ----------------------------------------------------

    def _run_rounds(self, X_train, y_train, validation, train_rows, rng):
        self.history_ = []
        records = []
        pool_X = np.empty((0,) + X_train.shape[1:], dtype=np.float32)
        pool_y = np.empty(0, dtype=np.int64)
        if not self._corrects():
            self.counterfactuals_ = _stack_records(records, self._user_shape)
            return

        for round_index in range(self.n_rounds):
            start = time.perf_counter()
            self._log(f"Round {round_index + 1}/{self.n_rounds}: explaining.")
            student = self.net_
            train_sources = _draw_sources(
                y_train, student.predict(X_train), self.n_counterfactuals, rng
            )
            round_records, explain_seconds = self._teach(
                student,
                X_train,
                y_train,
                train_sources,
                rng,
                f"round{round_index}",
            )
            round_records["round"] = np.full(len(train_sources), round_index)
            round_records["source_index"] = train_rows[train_sources]
            records.append(round_records)
            kept = round_records["kept"]
            pool_X = np.concatenate(
                [pool_X, self._to_internal(round_records["counterfactual"][kept])]
            )
            pool_y = np.concatenate([pool_y, round_records["teacher_index"][kept]])

            entry = _round_summary(round_records, len(pool_y))
            entry["counterfactuals_per_second"] = len(train_sources) / max(
                explain_seconds, 1e-9
            )
            self._check_round(entry)
            if len(pool_y):
                self._finetune_and_select(
                    student,
                    (X_train, y_train),
                    validation,
                    (pool_X, pool_y),
                    rng,
                    entry,
                    f"round{round_index}",
                )
            entry["seconds"] = time.perf_counter() - start
            self.history_.append(entry)
            self._log(_describe_round(round_index, entry))

        self.counterfactuals_ = _stack_records(records, self._user_shape)

    def _teach(self, student, X, y, sources, rng, stage):
        """Explain ``sources`` with the student and judge them with the teacher.

        ``stage`` prefixes the names of the explanation's and the teacher's
        stages in the working folder.
        """
        if len(sources) == 0:
            return _empty_records(self._user_shape), 0.0
        X_source, y_source = X[sources], y[sources]
        proba = student.predict_proba(X_source)
        predicted = proba.argmax(axis=1)
        target = _most_likely_other(proba, y_source)
        records = {
            "source_index": sources,
            "source": self._to_user(X_source),
            "source_label": self.classes_[y_source],
            "target_label": self.classes_[target],
            "teacher_label": np.full(len(sources), None, dtype=object),
            "teacher_index": np.full(len(sources), -1, dtype=np.int64),
            "verdict": np.full(len(sources), "", dtype=object),
            "reason": np.full(len(sources), "", dtype=object),
        }
        reason = records["reason"]
        reason[predicted != y_source] = STUDENT_WRONG_ON_SOURCE

        # The teacher sees the sources first: they are cheap to check, and a
        # misbehaving teacher fails here, before the explainer's work.
        if self.teacher_checks_sources:
            ask = np.flatnonzero(reason == "")
            labels = self._ask_teacher(
                records["source"][ask], None, rng, f"{stage}-source-answers"
            )
            wrong = labels != y_source[ask]
            reason[ask[wrong]] = TEACHER_WRONG_ON_SOURCE

        counterfactuals, reached, explain_seconds = self._run.stage(
            f"{stage}-explain",
            rng,
            lambda: self._timed_explore(student, X_source, target, sources),
        )
        flipped = student.predict(counterfactuals) == target
        records.update(
            counterfactual=self._to_user(counterfactuals),
            reached=reached,
            flipped=flipped,
        )
        reason[(reason == "") & ~flipped] = NOT_FLIPPED

        ask = np.flatnonzero(reason == "")
        labels = self._ask_teacher(
            records["counterfactual"][ask],
            records["source"][ask],
            rng,
            f"{stage}-answers",
        )
        records["teacher_index"][ask] = labels
        known = labels >= 0
        records["teacher_label"][ask[known]] = self.classes_[labels[known]]
        reason[ask[~known]] = OUT_OF_DISTRIBUTION

        judged = ask[known]
        verdict = records["verdict"]
        verdict[judged] = "other"
        verdict[judged[labels[known] == target[judged]]] = "true"
        verdict[judged[labels[known] == y_source[judged]]] = "false"
        if not self.keep_true_counterfactuals:
            reason[judged[verdict[judged] != "false"]] = TRUE_NOT_KEPT
        records["kept"] = reason == ""
        return records, explain_seconds

    def _finetune_and_select(self, student, train, validation, pool, rng, entry, stage):
        """Fine-tune a copy of ``student``; keep it if it scores better.

        ``stage`` prefixes the names of this step's stages in the working
        folder.
        """
        self._log(f"Fine-tuning on {len(pool[1])} counterfactuals.")
        finetuned = self._run.stage(
            f"{stage}-finetune",
            rng,
            lambda: self._finetune(student, train, pool),
            encode=net_state,
            decode=lambda state: load_net_state(
                self._finetuning_net(self._make_net()), state
            ),
        )
        X_val, y_val = validation
        if X_val is None:
            entry.update(score_before=np.nan, score_after=np.nan, accepted=True)
            self.net_ = finetuned
            return

        # Counterfactuals of validation images, labelled by the teacher, tell
        # whether the fine-tuned classifier follows the teacher's strategy.
        n_val = max(1, round(self.n_counterfactuals * self.validation_fraction))
        val_sources = _draw_sources(y_val, student.predict(X_val), n_val, rng)
        val_records, _ = self._teach(
            student, X_val, y_val, val_sources, rng, f"{stage}-validation"
        )
        judged = val_records["verdict"] != ""
        X_judged = self._to_internal(val_records["counterfactual"][judged])
        y_judged = val_records["teacher_index"][judged]

        before = _selection_score(student, X_val, y_val, X_judged, y_judged)
        after = _selection_score(finetuned, X_val, y_val, X_judged, y_judged)
        entry.update(score_before=before, score_after=after, accepted=after > before)
        if after > before:
            self.net_ = finetuned

    def _finetune(self, student, train, pool):
        (X_train, y_train), (pool_X, pool_y) = train, pool
        finetuned = copy.deepcopy(student)
        groups = np.r_[np.zeros(len(y_train), int), np.ones(len(pool_y), int)]
        shares = {0: 1.0 - self.counterfactual_share, 1: self.counterfactual_share}
        iterator = finetuned.iterator_train
        finetuned.iterator_train = partial(
            _finetuning_loader, groups=groups, group_shares=shares
        )
        self._finetuning_net(finetuned)
        try:
            finetuned.partial_fit(
                np.concatenate([X_train, pool_X]), np.concatenate([y_train, pool_y])
            )
        finally:
            finetuned.iterator_train = iterator
        return finetuned

    def _finetuning_net(self, net):
        """Set ``net`` up for fine-tuning: epochs and learning rate."""
        net.set_params(max_epochs=self.finetune_epochs)
        if self.finetune_lr is not None:
            net.set_params(lr=self.finetune_lr)
        return net

    def _check_explainer(self, net, X, y):
        """Try the explainer on two samples of an untrained net, to fail early."""
        net.initialize()
        target = (y + 1) % len(self.classes_)
        self._explain(net, X, target)
        if self.explore_threshold is None:
            return
        if X.ndim != 4:
            raise ValueError(
                "explore_threshold needs images (4-D X, or input_shape for "
                f"flattened images); got samples of shape {X.shape[1:]}. Set "
                "explore_threshold=None for feature vectors."
            )
        try:
            self._explain(
                net, X, target, locked=np.zeros((len(X),) + X.shape[2:], bool)
            )
        except TypeError as error:
            raise ValueError(
                f"explore_threshold needs an explainer whose explain takes "
                f"locked=...; {type(self.explainer_).__name__}.explain does not "
                f"({error}). Set explore_threshold=None or use a built-in "
                "explainer."
            ) from error

    def _explore(self, student, X, target, sources):
        """Explain each source; repeats of a source avoid its earlier edits.

        The k-th occurrence of every source is explained in one call, with
        the union of the regions its earlier counterfactuals changed locked.
        """
        if self.explore_threshold is None:
            return self._explain(student, X, target)
        occurrence = _occurrences(sources)
        counterfactuals = np.empty_like(X)
        reached = np.zeros(len(X), dtype=bool)
        changed = {}
        for level in range(int(occurrence.max()) + 1):
            rows = np.flatnonzero(occurrence == level)
            locked = None
            if level:
                locked = np.stack([changed[source] for source in sources[rows]])
            counterfactuals[rows], reached[rows] = self._explain(
                student, X[rows], target[rows], locked=locked
            )
            regions = changed_region(
                X[rows], counterfactuals[rows], self.explore_threshold
            )
            for source, region in zip(sources[rows], regions, strict=True):
                changed[source] = changed.get(source, False) | region
        return counterfactuals, reached

    def _timed_explore(self, student, X, target, sources):
        start = time.perf_counter()
        counterfactuals, reached = self._explore(student, X, target, sources)
        return counterfactuals, reached, time.perf_counter() - start

    def _explain(self, student, X, target, locked=None):
        if locked is None:
            counterfactuals, reached = self.explainer_.explain(student, X, target)
        else:
            counterfactuals, reached = self.explainer_.explain(
                student, X, target, locked=locked
            )
        counterfactuals = np.asarray(counterfactuals, dtype=np.float32)
        reached = np.asarray(reached, dtype=bool)
        if counterfactuals.shape != X.shape or reached.shape != (len(X),):
            raise ValueError(
                f"{type(self.explainer_).__name__}.explain must return "
                f"counterfactuals of shape {X.shape} and reached of shape "
                f"({len(X)},); got {counterfactuals.shape} and {reached.shape}."
            )
        if not np.all(np.isfinite(counterfactuals)):
            raise ValueError(
                f"{type(self.explainer_).__name__}.explain returned "
                "counterfactuals with NaN or infinite values."
            )
        return counterfactuals, reached

    def _ask_teacher(self, X, originals, rng, stage):
        """Encoded teacher labels of ``X``; -1 where the teacher cannot tell.

        A teacher whose signature has an ``originals`` parameter also gets
        the images the counterfactuals ``X`` were made from. The answers are
        the working folder's stage ``stage``: a resumed fit does not ask
        again.
        """
        if len(X) == 0:
            return np.empty(0, dtype=np.int64)
        return self._run.stage(stage, rng, lambda: self._query_teacher(X, originals))

    def _query_teacher(self, X, originals):
        if originals is not None and _takes_originals(self.teacher):
            labels = self.teacher(X, originals=originals)
        else:
            labels = self.teacher(X)
        labels = np.asarray(labels, dtype=object).reshape(-1)
        if len(labels) != len(X):
            raise ValueError(
                f"The teacher returned {len(labels)} labels for {len(X)} images; "
                "it must return exactly one label per image."
            )
        unknown = is_out_of_distribution(labels)
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        encoded = np.full(len(labels), -1, dtype=np.int64)
        outside = []
        for i in np.flatnonzero(~unknown):
            label = labels[i].item() if hasattr(labels[i], "item") else labels[i]
            if label in index:
                encoded[i] = index[label]
            else:
                outside.append(labels[i])
        if outside:
            raise ValueError(
                f"The teacher returned labels outside classes_ "
                f"{self.classes_.tolist()}: {sorted(set(map(repr, outside)))[:5]}. "
                "Return labels of y, or imbcfkd.OUT_OF_DISTRIBUTION where the "
                "teacher cannot tell."
            )
        return encoded

    def _check_round(self, entry):
        if entry["n_counterfactuals"] == 0:
            problem = "The classifier gets no training sample right to explain"
        elif entry["flip_rate"] == 0:
            problem = (
                f"The explainer flipped none of the {entry['n_counterfactuals']} "
                "counterfactuals (give it more steps or a larger step size)"
            )
        elif entry["n_kept"] == 0:
            problem = (
                "No counterfactual survived the teacher's rejection cascade (see "
                "counterfactuals_['reason'])"
            )
        else:
            return
        if entry["n_replayed"]:
            outcome = "fine-tuning replays earlier rounds' counterfactuals only"
        else:
            outcome = "the classifier is kept as it is"
        warnings.warn(f"{problem}; {outcome}.", CounterfactualWarning, stacklevel=3)

    # -- data handling ----------------------------------------------------

    def _draw_split(self, y, rng):
        """PyTorch's seed, and the rows of the training and validation parts.

        The validation rows are ``None`` when nothing is held out.
        """
        seed = int(rng.randint(np.iinfo(np.int32).max))
        rows = np.arange(len(y))
        if self.validation_fraction is None or not self._corrects():
            return seed, rows, None
        counts = np.bincount(y)
        n_val = int(np.ceil(self.validation_fraction * len(y)))
        if counts.min() < 2 or n_val < len(counts) or len(y) - n_val < len(counts):
            warnings.warn(
                f"Too few samples ({counts.tolist()} per class) for a stratified "
                f"validation share of {self.validation_fraction}; model selection "
                "is off and the fine-tuned classifier is always kept.",
                CounterfactualWarning,
                stacklevel=5,
            )
            return seed, rows, None
        train_rows, validation_rows = train_test_split(
            rows, test_size=n_val, stratify=y, random_state=rng
        )
        return seed, train_rows, validation_rows

    def _corrects(self):
        """Whether fit goes beyond the batch-balanced base classifier."""
        return self.n_counterfactuals > 0 and self.n_rounds > 0


def _takes_originals(teacher):
    """Whether ``teacher`` is called with the originals of counterfactuals."""
    try:
        return "originals" in inspect.signature(teacher).parameters
    except (TypeError, ValueError):
        return False


def _explainer_params(explainer):
    return explainer.get_params() if hasattr(explainer, "get_params") else {}


def _draw_sources(y, predicted, n, rng):
    """Indices of ``n`` correctly classified samples, classes in equal shares.

    Classes take turns regardless of their frequency; a class with fewer
    correct samples than its share is recycled.
    """
    pools = [np.flatnonzero((y == c) & (predicted == c)) for c in np.unique(y)]
    pools = [pool for pool in pools if len(pool)]
    if not pools or n == 0:
        return np.empty(0, dtype=np.int64)
    counts = _allocate(n, np.full(len(pools), 1.0 / len(pools)), rng)
    per_class = [
        _CyclingStream(pool, rng).take(count)
        for pool, count in zip(pools, counts, strict=True)
    ]
    # Interleave the classes so that any prefix of the sources stays balanced.
    order = [
        taken[position]
        for position in range(max(counts))
        for taken in per_class
        if position < len(taken)
    ]
    return np.asarray(order, dtype=np.int64)


def _occurrences(sources):
    """How many times each source appeared before, in order: 0 the first time."""
    seen = {}
    counts = np.empty(len(sources), dtype=np.int64)
    for i, source in enumerate(sources.tolist()):
        counts[i] = seen.get(source, 0)
        seen[source] = counts[i] + 1
    return counts


def _most_likely_other(proba, source):
    """The most probable class other than each sample's source class."""
    proba = np.array(proba, dtype=float, copy=True)
    proba[np.arange(len(source)), source] = -np.inf
    return proba.argmax(axis=1)


def _selection_score(net, X_val, y_val, X_judged, y_judged):
    """Mean of balanced accuracy and agreement with the teacher."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        score = balanced_accuracy_score(y_val, net.predict(X_val))
    if len(y_judged):
        agreement = np.mean(net.predict(X_judged) == y_judged)
        score = (score + agreement) / 2
    return float(score)


def _round_summary(records, n_replayed):
    n = len(records["kept"])
    judged = records["verdict"] != ""
    n_judged = int(judged.sum())
    return {
        "n_counterfactuals": n,
        "flip_rate": float(records["flipped"].mean()) if n else np.nan,
        "n_judged": n_judged,
        "feedback_accuracy": (
            float(np.mean(records["verdict"][judged] == "true")) if n_judged else np.nan
        ),
        "n_kept": int(records["kept"].sum()),
        "n_replayed": n_replayed,
        "score_before": np.nan,
        "score_after": np.nan,
        "accepted": False,
    }


def _describe_round(round_index, entry):
    return (
        f"Round {round_index + 1}: flip rate {entry['flip_rate']:.2f}, feedback "
        f"accuracy {entry['feedback_accuracy']:.2f}, {entry['n_kept']} kept, score "
        f"{entry['score_before']:.3f} -> {entry['score_after']:.3f} "
        f"({'accepted' if entry['accepted'] else 'base kept'}), "
        f"{entry['seconds']:.1f} s."
    )


_RECORD_KEYS = (
    "round",
    "source_index",
    "source",
    "counterfactual",
    "source_label",
    "target_label",
    "teacher_label",
    "teacher_index",
    "flipped",
    "reached",
    "verdict",
    "kept",
    "reason",
)


def _empty_records(user_shape):
    records = {key: np.empty(0, dtype=object) for key in _RECORD_KEYS}
    images = np.empty((0,) + tuple(user_shape), dtype=np.float32)
    records.update(
        source=images,
        counterfactual=images.copy(),
        teacher_index=np.empty(0, dtype=np.int64),
        flipped=np.empty(0, dtype=bool),
        kept=np.empty(0, dtype=bool),
    )
    return records


def _stack_records(records, user_shape):
    if not records:
        stacked = _empty_records(user_shape)
    else:
        stacked = {
            key: np.concatenate([r[key] for r in records]) for key in _RECORD_KEYS
        }
    # Encoded teacher labels are internal; teacher_label holds the real ones.
    del stacked["teacher_index"]
    return stacked


def _finetuning_loader(
    dataset, batch_size=64, groups=None, group_shares=None, **kwargs
):
    """Mixed original/counterfactual batches, whatever the net's iterator was."""
    for name in ORDER_OPTIONS:
        kwargs.pop(name, None)
    # The net's own validation split may leave a group out of the training part.
    present = np.asarray(groups)[dataset_indices(dataset, len(groups))]
    group_shares = {g: s for g, s in group_shares.items() if np.any(present == g)}
    # An epoch shows each original once on average, however large the pool of
    # counterfactuals has grown over the rounds.
    n_originals = int(np.sum(present == 0))
    n_batches = None
    if n_originals and 0 in group_shares:
        share = group_shares[0] / sum(group_shares.values())
        n_batches = max(1, int(np.ceil(n_originals / (share * batch_size))))
    return BalancedBatchLoader(
        dataset, batch_size, groups, group_shares, n_batches, **kwargs
    )
