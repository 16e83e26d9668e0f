"""Secrets at rest: keys from the setting or a private key file, rotation by listing keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from propylon.storage.secret_box import SecretBox, SecretKeyError


def test_ciphertext_hides_the_secret_and_opens_with_the_key() -> None:
    box = SecretBox([Fernet.generate_key()])
    sealed = box.encrypt("iat-plaintext-value")
    assert "iat-plaintext-value" not in sealed
    assert box.decrypt(sealed) == "iat-plaintext-value"
    with pytest.raises(SecretKeyError):
        SecretBox([Fernet.generate_key()]).decrypt(sealed)


def test_listing_a_new_key_first_rotates_without_losing_old_secrets() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    before = SecretBox.from_setting(old.decode()).encrypt("written with the old key")
    rotated = SecretBox.from_setting(f"{new.decode()}, {old.decode()}")
    assert rotated.decrypt(before) == "written with the old key"
    after = rotated.encrypt("written with the new key")
    assert SecretBox([new]).decrypt(after) == "written with the new key"
    with pytest.raises(SecretKeyError):
        SecretBox([old]).decrypt(after)


def test_malformed_or_missing_keys_are_refused() -> None:
    with pytest.raises(SecretKeyError):
        SecretBox.from_setting("not-a-fernet-key")
    with pytest.raises(SecretKeyError):
        SecretBox.from_setting(" , ")


def test_the_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.key"
    sealed = SecretBox.from_key_file(path).encrypt("kept across restarts")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert SecretBox.from_key_file(path).decrypt(sealed) == "kept across restarts"
    assert path.read_bytes() == content
