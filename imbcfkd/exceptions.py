"""Warning classes raised by imbcfkd."""


class CounterfactualWarning(UserWarning):
    """A counterfactual step produced nothing usable.

    Raised when the explainer flips none of the sources, or when the teacher's
    rejection cascade leaves no counterfactual to fine-tune on. The estimator
    then keeps the base model rather than failing.
    """
