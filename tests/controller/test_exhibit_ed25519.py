"""The pure-Python Ed25519 check shipped in every exhibit's verify.py agrees with the
`cryptography` package (OpenSSL) on random keys and messages, good and tampered."""

from __future__ import annotations

import os
import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from controller.evidence.verify_exhibit import ed25519_verify

L = 2**252 + 27742317777372353535851937790883648493


def reference(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def test_rfc8032_test_vector_1() -> None:
    """RFC 8032 section 7.1, TEST 1 (empty message)."""
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    signature = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert ed25519_verify(public, b"", signature)
    assert not ed25519_verify(public, b"\0", signature)


def test_agrees_with_cryptography_on_random_keys_and_messages() -> None:
    rng = random.Random(os.urandom(8))
    checked = 0
    for i in range(200):
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes_raw()
        message = os.urandom(rng.choice([0, 1, 31, 32, 64, 200, 1000]))
        signature = key.sign(message)
        assert ed25519_verify(public, message, signature), f"case {i}: a good signature fails"
        assert reference(public, message, signature)
        # One bit flipped in R, in S, in the message, in the key: both refuse alike.
        tampered = [
            (public, message, flip(signature, rng.randrange(0, 32), rng)),
            (public, message, flip(signature, rng.randrange(32, 64), rng)),
            (flip(public, rng.randrange(32), rng), message, signature),
        ]
        if message:
            tampered.append((public, flip(message, rng.randrange(len(message)), rng), signature))
        for pub, msg, sig in tampered:
            assert ed25519_verify(pub, msg, sig) == reference(pub, msg, sig), f"case {i}"
            assert not ed25519_verify(pub, msg, sig)
            checked += 1
        # Someone else's signature on the same message.
        other = Ed25519PrivateKey.generate().sign(message)
        assert not ed25519_verify(public, message, other)
    assert checked >= 600


def flip(data: bytes, index: int, rng: random.Random) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << rng.randrange(8)
    return bytes(out)


def test_non_canonical_s_and_bad_lengths_are_refused() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    signature = key.sign(b"exhibit")
    s = int.from_bytes(signature[32:], "little")
    malleable = signature[:32] + (s + L).to_bytes(32, "little")  # same point, S >= L
    assert not ed25519_verify(public, b"exhibit", malleable)
    assert not reference(public, b"exhibit", malleable)
    assert not ed25519_verify(public[:31], b"exhibit", signature)
    assert not ed25519_verify(public, b"exhibit", signature[:63])
    assert not ed25519_verify(b"\xff" * 32, b"exhibit", signature)  # y >= p: not a point


@pytest.mark.parametrize("size", [0, 1, 10_000])
def test_message_sizes(size: int) -> None:
    key = Ed25519PrivateKey.generate()
    message = os.urandom(size)
    assert ed25519_verify(key.public_key().public_bytes_raw(), message, key.sign(message))
