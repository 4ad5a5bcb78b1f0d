"""The node's keyring: the current key, earlier epochs' keys, and clear refusals."""

from __future__ import annotations

import io
import stat

import numpy as np
import pytest

from bank_node.keys import (
    INTEGRITY_KEY,
    PARAMS,
    SECRET_CONTEXT,
    SIGNING_KEY,
    ckks_keygen,
    keyring_load,
    signing_keygen,
)
from he.codec import decrypt_vector, encrypt_vector
from he.errors import HEError
from he.params import CkksParams


def test_keygen_writes_the_secret_context_readable_only_by_its_owner(tmp_path):
    ckks_keygen(tmp_path, CkksParams())
    signing_keygen(tmp_path)
    for name in (SECRET_CONTEXT, INTEGRITY_KEY, SIGNING_KEY):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert len((tmp_path / INTEGRITY_KEY).read_bytes()) == 32
    with pytest.raises(FileExistsError):
        ckks_keygen(tmp_path, CkksParams())


def test_a_node_with_the_previous_epochs_key_decrypts_data_of_that_epoch(tmp_path):
    old, new, bank = tmp_path / "old", tmp_path / "new", tmp_path / "bank"
    old_fp = ckks_keygen(old, CkksParams())
    new_fp = ckks_keygen(new, CkksParams())
    signing_keygen(bank)
    keys = keyring_load(new / SECRET_CONTEXT, new / PARAMS, bank / SIGNING_KEY, (old,))
    assert keys.fingerprint == new_fp and old_fp in keys.previous
    old_ctx, params = keys.for_epoch(old_fp)
    buf = io.BytesIO()
    encrypt_vector(old_ctx, np.arange(5.0), params, old_fp, buf)
    assert np.allclose(
        decrypt_vector(old_ctx, io.BytesIO(buf.getvalue()), params), np.arange(5.0), atol=1e-4
    )
    with pytest.raises(HEError, match="previous_key_dirs"):
        keys.for_epoch("f" * 64)


def test_each_epoch_has_its_own_integrity_key(tmp_path):
    old, new, bank = tmp_path / "old", tmp_path / "new", tmp_path / "bank"
    old_fp = ckks_keygen(old, CkksParams())
    new_fp = ckks_keygen(new, CkksParams())
    signing_keygen(bank)
    keys = keyring_load(new / SECRET_CONTEXT, new / PARAMS, bank / SIGNING_KEY, (old,))
    assert keys.integrity_for(new_fp) == (new / INTEGRITY_KEY).read_bytes()
    assert keys.integrity_for(old_fp) == (old / INTEGRITY_KEY).read_bytes()
    assert keys.integrity_for(old_fp) != keys.integrity_for(new_fp)
    assert keys.integrity_key.hex() not in repr(keys)


@pytest.mark.parametrize("which", ["current", "previous"])
def test_a_key_dir_without_its_integrity_key_is_refused_naming_the_file(tmp_path, which):
    old, new, bank = tmp_path / "old", tmp_path / "new", tmp_path / "bank"
    ckks_keygen(old, CkksParams())
    ckks_keygen(new, CkksParams())
    signing_keygen(bank)
    ((new if which == "current" else old) / INTEGRITY_KEY).unlink()
    with pytest.raises(HEError, match=r"integrity\.key is missing.*keygen.*key bundle"):
        keyring_load(new / SECRET_CONTEXT, new / PARAMS, bank / SIGNING_KEY, (old,))
