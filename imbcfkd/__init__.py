"""imbcfkd: trustworthy image classifiers for imbalanced data.

Counterfactual Knowledge Distillation (CFKD) finds the shortcuts a classifier
learned from a rare class, through counterfactual explanations judged by a
teacher, and fine-tunes the shortcuts away.
"""

from .annotation import HumanTeacher
from .baselines import BaselineClassifier
from .cfkd import CFKDClassifier
from .exceptions import AnnotationIncomplete, CounterfactualWarning
from .explainers import AutoencoderExplainer, GradientExplainer
from .losses import FocalLoss
from .networks import MLP, ResNet18, SmallResNet, make_net
from .persistence import load_model, save_model
from .sampling import BalancedBatchLoader, BalancedBatchSampler, ImageResampler
from .teachers import OUT_OF_DISTRIBUTION, OracleTeacher

__version__ = "0.1.0"

__all__ = [
    "AnnotationIncomplete",
    "AutoencoderExplainer",
    "BalancedBatchLoader",
    "BalancedBatchSampler",
    "BaselineClassifier",
    "CFKDClassifier",
    "CounterfactualWarning",
    "FocalLoss",
    "GradientExplainer",
    "HumanTeacher",
    "ImageResampler",
    "MLP",
    "OUT_OF_DISTRIBUTION",
    "OracleTeacher",
    "ResNet18",
    "SmallResNet",
    "load_model",
    "make_net",
    "save_model",
]
