"""Warning classes raised by imbcfkd."""


class CounterfactualWarning(UserWarning):
    """A counterfactual step produced nothing usable.

    Raised when the explainer flips none of the sources, or when the teacher's
    rejection cascade leaves no counterfactual to fine-tune on. The estimator
    then keeps the base model rather than failing.
    """


class AnnotationIncomplete(RuntimeError):
    """A human teacher stopped before every image had an answer.

    Raised by :class:`imbcfkd.HumanTeacher` when the expert presses "Stop for
    now", or when images await an answer and the teacher does not serve a
    page. Every answer given is on disk: fit again with the same ``work_dir``
    to continue.

    Attributes
    ----------
    n_pending : int
        Images still waiting for an answer.
    """

    def __init__(self, message, n_pending=0):
        super().__init__(message)
        self.n_pending = n_pending
