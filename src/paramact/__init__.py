"""paramact: which parameters of a language model does an input activate?

A(s, w) = |w · ∂D(s)/∂w| for every weight of every decoder block, per input s,
computed exactly for a whole batch with one backward pass and reduced on the fly.
"""

from .anatomy import Anatomy, discover
from .api import ActivationConfig, Analysis, activation_map, analyze, pair_similarity
from .density import DEFAULT_GAMMAS, layer_density
from .errors import UserError
from .memory import keep_freed_memory
from .models import DEFAULT_MODEL, REGISTRY, fetch, load_model
from .similarity import fingerprint_llmdcos, fingerprint_matrix, llmdcos, llmdcos_from_gram
from .targets import TARGETS, register_target

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_GAMMAS",
    "DEFAULT_MODEL",
    "REGISTRY",
    "TARGETS",
    "ActivationConfig",
    "Analysis",
    "Anatomy",
    "UserError",
    "activation_map",
    "analyze",
    "discover",
    "fetch",
    "fingerprint_llmdcos",
    "fingerprint_matrix",
    "keep_freed_memory",
    "layer_density",
    "llmdcos",
    "llmdcos_from_gram",
    "load_model",
    "pair_similarity",
    "register_target",
]
