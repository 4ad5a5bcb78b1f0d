"""The portal process, running a whole round, never holds a CKKS context with a secret key.

A child process plays the portal alone: fresh SQLite database, a key epoch, a policy,
three uploads prepared beforehand by the banks (this parent process), the scheduler's
aggregation. Then it looks through every live object for TenSEAL contexts and secret
keys. Running it in a child keeps the banks' secret context (held here) out of the
inspected process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from he.codec import TRAILER_SLOTS, encrypt_to_file, pack_update
from he.keys import fingerprint, generate_secret_context, public_context_bytes
from he.params import CkksParams

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import gc, json, sys
from pathlib import Path
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from datetime import timedelta
from django.utils import timezone
import tenseal as ts
from consortium.members.services import bank_create
from consortium.rounds import storage
from consortium.rounds.models import Round, Submission
from consortium.rounds.services import key_epoch_register, policy_create, scheduler_tick
from he.params import CkksParams

work = Path(sys.argv[1])
epoch = key_epoch_register(public_context=(work / "public.ctx").read_bytes(),
                           ckks_params=CkksParams().to_dict(), actor="probe")
policy = policy_create(name="probe", actor="probe", activate=True, min_banks=3,
                       normalize_features=False, secure_aggregation="v1",
                       model_spec={"kind": "mlp", "hidden": [4], "seed": 1, "loss": "bce"})
scheduler_tick()
rnd = Round.objects.get(state="open")
length = rnd.policy_snapshot["vector_length"]
meta = json.loads((work / "meta.json").read_text())
for slug, digest in meta["digests"].items():
    bank, _ = bank_create(slug=slug, name=slug, actor="probe")
    rel = storage.upload_relpath(rnd.number, slug, digest)
    tmp = storage.temp_path()
    tmp.write_bytes((work / f"{slug}.ckks").read_bytes())
    storage.commit(tmp, rel)
    Submission.objects.create(round=rnd, bank=bank, digest=digest, signature="x",
                              signing_public_key="x", size_bytes=1, blob=rel)
scheduler_tick()
rnd.refresh_from_db()
contexts = [o for o in gc.get_objects() if isinstance(o, ts.Context)]
secret_keys = [o for o in gc.get_objects() if isinstance(o, ts.enc_context.SecretKey)]
print(json.dumps({"state": rnd.state, "length": length, "contexts": len(contexts),
                  "private": sum(c.is_private() or c.has_secret_key() for c in contexts),
                  "secret_key_objects": len(secret_keys)}))
"""


def test_a_portal_process_running_a_full_round_never_holds_a_secret_key(tmp_path):
    params = CkksParams()
    secret = generate_secret_context(params)
    public = public_context_bytes(secret)
    (tmp_path / "public.ctx").write_bytes(public)
    # The length the probe policy's model needs: an MLP with one hidden layer of 4.
    from models.features import FEATURE_NAMES
    from models.nets import build_model
    from models.vector import vector_length

    length = (
        vector_length(
            build_model(
                {"kind": "mlp", "hidden": [4], "seed": 1, "loss": "bce"}, len(FEATURE_NAMES)
            )
        )
        + TRAILER_SLOTS
    )
    digests = {}
    for i, slug in enumerate(["alpha", "beta", "gamma"]):
        values = pack_update(np.full(length - TRAILER_SLOTS, 0.1 * (i + 1)), 10, 1.5)
        digests[slug] = encrypt_to_file(
            secret, values, params, fingerprint(public), tmp_path / f"{slug}.ckks"
        )
    (tmp_path / "meta.json").write_text(json.dumps({"digests": digests}))
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "consortium.settings",
            "CONSORTIUM_VAR_DIR": str(tmp_path / "var"),
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["state"] == "published"
    assert probe["contexts"] >= 1  # the portal did load the public context to add
    assert probe["private"] == 0
    assert probe["secret_key_objects"] == 0
