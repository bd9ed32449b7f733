"""Discriminative deep-feature losses and pairwise kernels, as pure functions.

Every loss takes arrays first and keyword-only hyperparameters, returns
per-example values (the caller reduces), and is jit-, vmap- and
grad-compatible. See README.md for the table of the public API.
"""

from losses._pairwise import l2_normalize
from losses._pairwise import map_row_blocks
from losses._pairwise import pairwise_cosine_similarity
from losses._pairwise import pairwise_distance
from losses._pairwise import pairwise_squared_distance
from losses._pairwise import valid_pairwise_anchors
