"""The node's keyring: the current key, earlier epochs' keys, and clear refusals."""

from __future__ import annotations

import io
import stat

import numpy as np
import pytest

from bank_node.keys import (
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
    for name in (SECRET_CONTEXT, SIGNING_KEY):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
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
