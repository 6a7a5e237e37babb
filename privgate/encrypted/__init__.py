"""Homomorphic-encryption inference: score records the model's host cannot read.

A registry consumer encodes and encrypts its records (CKKS, TenSEAL) with a secret key
that stays in its process; `privgate encrypted serve` evaluates an approved, signed,
HE-ready model (training.model logistic or mlp_poly) on the ciphertexts and returns
encrypted logits; the client decrypts. See `circuit` (the layout and the folding),
`params` (parameters and their security), `server` and `client`.
"""

from privgate.encrypted.client import EncryptedScorer, EncryptedScoringError, score_file
from privgate.encrypted.params import HE_READY_MODELS, HEParameters, NotHEReadyError

__all__ = [
    "HE_READY_MODELS",
    "EncryptedScorer",
    "EncryptedScoringError",
    "HEParameters",
    "NotHEReadyError",
    "score_file",
]
