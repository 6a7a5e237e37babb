"""CKKS parameters per HE-ready model family, and the checks on a client's context.

The parameters are fixed per model family, not negotiated: the server states them
(`GET /v1/model`), the client refuses any that are not on this list (a server cannot
talk it into weak parameters), and the server refuses a context under any other.

Security: SEAL's CKKS at ring degree N = 8192 is 128-bit secure (classical, the
HomomorphicEncryption.org standard, SEAL's default `sec_level_type.tc128`) while the
whole coefficient modulus stays within 218 bits. Both families use N = 8192, so 4,096
records ride in every ciphertext's slots, with a 40-bit scale:

- `logistic`: one plaintext multiply (depth 1): primes 60-40-60, 160 bits.
- `mlp_poly`: a plaintext multiply, then a square (depth 2): primes 60-40-40-60,
  200 bits.

Both send relinearization keys (the square needs them; TenSEAL's tensor product asks for
them even for plaintext multiplies) and no Galois keys (nothing is rotated).

The first prime holds the result's integer part and precision (60 - 40 = 20 bits above
the scale, logits up to about 5e5); the last is SEAL's special prime for key switching.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from privgate.errors import PrivgateError

# The largest total coefficient modulus (bits) at 128-bit classical security, per ring
# degree (HomomorphicEncryption.org security standard; SEAL's CoeffModulus::MaxBitCount).
MAX_COEFF_BITS_128 = {4096: 109, 8192: 218, 16384: 438, 32768: 881}

HE_READY_MODELS = ("logistic", "mlp_poly")

# The request header naming the client's uploaded context (its SHA-256).
CONTEXT_HEADER = "X-Privgate-Context"


class NotHEReadyError(PrivgateError):
    """Raised for a model family or network the encrypted circuit cannot evaluate."""


class PayloadError(PrivgateError):
    """A request the server refuses: `status` is the HTTP status (4xx) to answer with.

    The message never quotes the payload: it names what was wrong with it.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HEParameters:
    """CKKS parameters: ring degree, coefficient-modulus primes (bits), scale (bits)."""

    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    relin_keys: bool

    def __post_init__(self) -> None:
        limit = MAX_COEFF_BITS_128.get(self.poly_modulus_degree)
        if limit is None or sum(self.coeff_mod_bit_sizes) > limit:
            raise NotHEReadyError(
                f"CKKS parameters N={self.poly_modulus_degree}, primes "
                f"{list(self.coeff_mod_bit_sizes)} are not 128-bit secure"
            )

    @property
    def slots(self) -> int:
        """Return the records one ciphertext carries (N / 2)."""
        return self.poly_modulus_degree // 2

    @property
    def depth(self) -> int:
        """Return the multiplicative depth (primes minus the first and the special one)."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def security_bits(self) -> int:
        """Return the classical security level these parameters meet."""
        return 128

    def ciphertext_bytes_bound(self) -> int:
        """Return an upper bound on one fresh ciphertext's serialized size."""
        data_primes = len(self.coeff_mod_bit_sizes) - 1
        return 2 * self.poly_modulus_degree * data_primes * 8 + 1024

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form the server publishes."""
        return asdict(self) | {
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "slots": self.slots,
            "depth": self.depth,
            "security_bits": self.security_bits,
            "scheme": "CKKS",
        }


_PARAMETERS = {
    # TenSEAL's tensor product asks for relinearization keys even when it multiplies by
    # plaintexts only, as the logistic circuit does.
    "logistic": HEParameters(8192, (60, 40, 60), 40, relin_keys=True),
    "mlp_poly": HEParameters(8192, (60, 40, 40, 60), 40, relin_keys=True),
}


def parameters_for(model: str) -> HEParameters:
    """Return the CKKS parameters of an HE-ready model family.

    Raises:
        NotHEReadyError: for a family with no encrypted circuit (mlp: ReLU).
    """
    try:
        return _PARAMETERS[model]
    except KeyError:
        raise NotHEReadyError(
            f"training.model {model!r} is not HE-ready; choose one of {list(HE_READY_MODELS)}"
        ) from None


def parameters_from_dict(data: Any) -> HEParameters:
    """Return the known parameters `data` names, refusing any other (the client's check).

    Raises:
        NotHEReadyError: when `data` is not exactly one of privgate's parameter sets.
    """
    try:
        wanted = HEParameters(
            int(data["poly_modulus_degree"]),
            tuple(int(b) for b in data["coeff_mod_bit_sizes"]),
            int(data["scale_bits"]),
            bool(data["relin_keys"]),
        )
    except (KeyError, TypeError, ValueError):
        raise NotHEReadyError("the server's CKKS parameters are malformed") from None
    if wanted not in _PARAMETERS.values():
        raise NotHEReadyError(
            "the server asks for CKKS parameters privgate does not use; refusing to encrypt"
        )
    return wanted


def new_secret_context(params: HEParameters) -> Any:
    """Return a fresh TenSEAL context holding a new secret key (the client's, never sent)."""
    import tenseal as ts

    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    context.global_scale = 2.0**params.scale_bits
    if params.relin_keys:
        context.generate_relin_keys()
    return context


def public_context_bytes(context: Any, params: HEParameters) -> bytes:
    """Serialize what the server needs: parameters and, for a square, relinearization keys.

    No secret key, no public key (the server encrypts nothing), no Galois keys (the
    circuit rotates nothing).
    """
    return context.serialize(
        save_public_key=False,
        save_secret_key=False,
        save_galois_keys=False,
        save_relin_keys=params.relin_keys,
    )


def parms_id(context: Any) -> list[int]:
    """Return SEAL's hash of the context's encryption parameters (exact primes included)."""
    return list(context.seal_context().data.key_parms_id())


# A context is first parsed in a child process under these bounds. SEAL allocates every
# key a serialized key set declares, and a few hundred kilobytes of compressed zeros can
# declare gigabytes of them (a "relinearization key bomb"); a real mlp_poly context
# needs about 60 MB and 0.2 s to load. Under the memory bound such a context does not
# fail fast: SEAL keeps allocating, so the time bound is what ends it.
PROBE_MEMORY_BYTES = 1536 * 1024 * 1024
PROBE_SECONDS = 10
_PROBES = threading.BoundedSemaphore(2)  # at most two children (3 GB) at once
_PROBE = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import tenseal as ts
ts.context_from(sys.stdin.buffer.read())
"""


def probe_context(data: bytes) -> None:
    """Parse `data` as a TenSEAL context in a child process with bounded memory and time.

    Raises:
        PayloadError: 400 when the child fails (not a context, or one that needs more
            than PROBE_MEMORY_BYTES to load) or takes longer than PROBE_SECONDS.
    """
    import subprocess
    import sys

    try:
        with _PROBES:
            done = subprocess.run(
                [sys.executable, "-c", _PROBE, str(PROBE_MEMORY_BYTES)],
                input=data,
                capture_output=True,
                timeout=PROBE_SECONDS,
                check=False,
            )
    except subprocess.TimeoutExpired:
        raise PayloadError(
            400, "the context declares more keys than a context holds (it did not load in time)"
        ) from None
    if done.returncode != 0:
        raise PayloadError(
            400,
            "the context is not a serialized TenSEAL context, or declares more keys than "
            "a context holds",
        )


def load_public_context(data: bytes, params: HEParameters, expected_parms_id: list[int]) -> Any:
    """Load a client's context, refusing a secret key, other parameters or missing keys.

    The bytes are parsed in a bounded child process first (`probe_context`), then here.

    Raises:
        PayloadError: 400 for bytes that are not a context or that carry a secret key,
            422 for other parameters or missing relinearization keys.
    """
    import tenseal as ts

    probe_context(data)
    try:
        context = ts.context_from(data)
    except (ValueError, RuntimeError, TypeError, MemoryError):
        raise PayloadError(400, "the context is not a serialized TenSEAL context") from None
    try:
        return _checked(context, params, expected_parms_id)
    except (ValueError, RuntimeError, TypeError):
        raise PayloadError(422, "the context's parameters cannot be read") from None


def _checked(context: Any, params: HEParameters, expected_parms_id: list[int]) -> Any:
    if context.has_secret_key():
        del context
        raise PayloadError(
            400,
            "the context carries a secret key; it was discarded. Send the public context "
            "only (privgate.encrypted's client does)",
        )
    key_data = context.seal_context().data.key_context_data()
    if str(key_data.parms().scheme()) != "SCHEME_TYPE.CKKS" or parms_id(context) != list(
        expected_parms_id
    ):
        raise PayloadError(
            422,
            f"the context's encryption parameters are not the model's (CKKS, "
            f"N={params.poly_modulus_degree}, primes {list(params.coeff_mod_bit_sizes)})",
        )
    if context.global_scale != 2.0**params.scale_bits:
        raise PayloadError(422, f"the context's scale is not 2^{params.scale_bits}")
    if params.relin_keys and not context.has_relin_keys():
        raise PayloadError(
            422, "the context holds no relinearization keys; this model squares ciphertexts"
        )
    context.auto_rescale = context.auto_relin = context.auto_mod_switch = True
    return context
