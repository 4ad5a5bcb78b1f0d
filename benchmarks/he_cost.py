"""CKKS cost on the wire and on the CPU: bytes per parameter, throughput, aggregation memory.

    python benchmarks/he_cost.py [--params 1000000] [--banks 20]

Prints comparable figures: our default parameters against NVIDIA FLARE's default CKKS
setting (N=8192, primes [60, 40, 40], scale 2^40) measured in the same process, and the
aggregation's peak RSS for 2 banks against ``--banks`` banks (a ratio near 1 means memory
does not grow with the number of banks). Then the same for secure aggregation v2 (seeded
symmetric ciphertexts, two reals per complex slot, pairwise and self masks for a cohort of
``--banks`` banks): bytes per parameter of an upload and of the aggregate, and the time to
encrypt, sum, remove the revealed self-masks and decrypt.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tenseal as ts
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from he.aggregate import sum_vectors  # noqa: E402
from he.codec import TRAILER_SLOTS, decrypt_vector, encrypt_to_file, pack_update  # noqa: E402
from he.keys import (  # noqa: E402
    fingerprint,
    generate_secret_context,
    load_public_context,
    public_context_bytes,
    secret_context_bytes,
)
from he.masking import MaskTerm, RoundBinding, pairwise_terms  # noqa: E402
from he.params import CkksParams  # noqa: E402
from he.ring import kit_from_tenseal  # noqa: E402
from he.seeded import decrypt_vector2, encrypt_vector2, masker_for, sum_vectors2  # noqa: E402

FLARE_DEFAULT = CkksParams(8192, (60, 40, 40), 40)


def wire_ratio(params: CkksParams, n: int) -> tuple[float, float]:
    """(bytes per parameter, ratio to float32) for an ``n``-value vector."""
    ctx = generate_secret_context(params)
    with tempfile.NamedTemporaryFile() as tmp:
        encrypt_to_file(ctx, np.random.default_rng(0).normal(size=n), params, "x", Path(tmp.name))
        size = Path(tmp.name).stat().st_size
    return size / n, size / n / 4


def aggregate_child(workdir: str, count: int) -> None:
    """Run in a child process: sum ``count`` stored updates, print peak RSS (KiB)."""
    work = Path(workdir)
    params = CkksParams()
    public = load_public_context((work / "public.ctx").read_bytes(), params)
    paths = sorted(work.glob("update-*.ckks"))[:count]
    started = time.perf_counter()
    with open(work / f"sum-{count}.ckks", "wb") as out:
        sum_vectors(paths, public, params, out)
    elapsed = time.perf_counter() - started
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed)


def cohort_terms(banks: int, binding: RoundBinding) -> list[list[MaskTerm]]:
    """Each bank's masks: pairwise towards the other ``banks - 1`` plus its self-mask."""
    keys = {f"bank-{i:03d}": X25519PrivateKey.generate() for i in range(banks)}
    publics = {bank: key.public_key() for bank, key in keys.items()}
    return [
        [
            *pairwise_terms(key, bank, publics, binding),
            MaskTerm(bank, os.urandom(32), 1),
        ]
        for bank, key in sorted(keys.items())
    ]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def report_v2(
    secret: ts.Context, public_bytes: bytes, params: CkksParams, n: int, banks: int, work: Path
) -> None:
    """Secure aggregation v2 in the same run: wire size and encrypt/sum/unmask/decrypt time."""
    kit = kit_from_tenseal(secret, params)
    public = kit_from_tenseal(load_public_context(public_bytes, params), params)
    fp = fingerprint(public_bytes)
    binding = RoundBinding("benchmark", 1, fp)
    terms = cohort_terms(banks, binding)
    rng = np.random.default_rng(1)
    plain = [pack_update(rng.normal(0, 0.1, n - TRAILER_SLOTS), 100 + k, 1.5) for k in range(2)]
    paths = [work / f"update-{k:03d}.ckks2" for k in range(banks)]
    revealed = [MaskTerm(t[-1].peer, t[-1].seed, -1) for t in terms]
    result: list[np.ndarray] = []

    def encrypt_all() -> None:
        for k, path in enumerate(paths):
            with open(path, "wb") as out:
                encrypt_vector2(kit, plain[k % 2], fp, out, masker_for(kit, terms[k], binding))

    def add_up() -> None:
        # As in the protocol: the self-seeds are revealed at the deadline, before the sum,
        # so one pass adds the uploads and the correction that removes the self-masks.
        with open(work / "unmasked.ckks2", "wb") as out:
            sum_vectors2(paths, public, out, masker_for(public, revealed, binding))

    def unmasked() -> bytes:
        return (work / "unmasked.ckks2").read_bytes()

    seconds = {
        "encrypt": timed(encrypt_all),
        "sum": timed(add_up),
        "decrypt": timed(lambda: result.append(decrypt_vector2(kit, io.BytesIO(unmasked())))),
    }
    expected = plain[0] * ((banks + 1) // 2) + plain[1] * (banks // 2)
    error = float(np.linalg.norm(result[0] - expected) / np.linalg.norm(expected))
    sizes = (paths[0].stat().st_size / n, (work / "unmasked.ckks2").stat().st_size / n)
    print_v2(n, banks, sizes, seconds, error)


def print_v2(
    n: int, banks: int, sizes: tuple[float, float], seconds: dict[str, float], error: float
) -> None:
    enc = seconds["encrypt"] / banks
    print(f"\nsecure aggregation v2 (seeded, complex-packed, {banks - 1} pair masks + self-mask)")
    print(f"  upload    {sizes[0]:6.2f} B/param  {sizes[0] / 4:5.2f}x float32")
    print(f"  aggregate {sizes[1]:6.2f} B/param  {sizes[1] / 4:5.2f}x float32")
    print(f"  encrypt   {n / enc / 1e6:6.2f} M params/s  ({enc:.2f} s per masked bank update)")
    rate = banks * n / seconds["sum"] / 1e6
    print(f"  aggregate {rate:6.2f} M params/s summed  ({seconds['sum']:.2f} s for {banks} banks,")
    print(f"            removing their {banks} revealed self-masks in the same pass)")
    print(
        f"  decrypt   {n / seconds['decrypt'] / 1e6:6.2f} M params/s  ({seconds['decrypt']:.2f} s)"
    )
    print(f"  v2 encrypt x {banks} + sum + decrypt: {sum(seconds.values()):.2f} s")
    print(f"  relative error of the decrypted sum against the plain sum: {error:.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", type=int, default=1_000_000)
    p.add_argument("--banks", type=int, default=20)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        aggregate_child(args.child[0], int(args.child[1]))
        return

    n = args.params
    ours = CkksParams()
    print(f"vector of {n:,} parameters, {args.banks} banks\n")
    print("wire size per parameter (float32 = 4 bytes)")
    for label, params in [
        ("consortium default N=4096 [60,40] 2^28", ours),
        ("NVIDIA FLARE default N=8192 [60,40,40] 2^40", FLARE_DEFAULT),
    ]:
        per, ratio = wire_ratio(params, n)
        print(f"  {label:<45} {per:6.2f} B/param  {ratio:5.2f}x float32")

    secret = generate_secret_context(ours)
    public_bytes = public_context_bytes(secret)
    fp = fingerprint(public_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "public.ctx").write_bytes(public_bytes)
        (work / "secret.ctx").write_bytes(secret_context_bytes(secret))
        rng = np.random.default_rng(1)
        plain = [rng.normal(0, 0.1, n - TRAILER_SLOTS) for _ in range(2)]
        started = time.perf_counter()
        for k in range(args.banks):
            weights = plain[k % 2]
            encrypt_to_file(
                secret, pack_update(weights, 100 + k, 1.5), ours, fp, work / f"update-{k:03d}.ckks"
            )
        enc = (time.perf_counter() - started) / args.banks
        print(f"\nencrypt   {n / enc / 1e6:6.2f} M params/s  ({enc:.2f} s per bank update)")

        peaks = {}
        for count in (2, args.banks):
            out = subprocess.run(
                [sys.executable, __file__, "--child", tmp, str(count)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            peaks[count] = (int(out[0]) / 1024, float(out[1]))
        agg_rate = args.banks * n / peaks[args.banks][1]
        print(
            f"aggregate {agg_rate / 1e6:6.2f} M params/s summed  "
            f"({peaks[args.banks][1]:.2f} s for {args.banks} banks)"
        )
        started = time.perf_counter()
        with open(work / f"sum-{args.banks}.ckks", "rb") as stream:
            decrypt_vector(secret, stream, ours)
        dec = time.perf_counter() - started
        print(f"decrypt   {n / dec / 1e6:6.2f} M params/s  ({dec:.2f} s)")
        print("\naggregation peak RSS (child process, includes Python + TenSEAL)")
        for count, (mib, _secs) in peaks.items():
            print(f"  {count:>3} banks: {mib:7.1f} MiB")
        upload_mib = (work / "update-000.ckks").stat().st_size / 2**20
        print(
            f"  ratio {args.banks} banks / 2 banks: {peaks[args.banks][0] / peaks[2][0]:.2f} "
            f"(one update is {upload_mib:.1f} MiB; {args.banks} would be "
            f"{upload_mib * args.banks:.0f} MiB)"
        )
        v1_total = enc * args.banks + peaks[args.banks][1] + dec
        print(f"\nv1 encrypt x {args.banks} + sum + decrypt: {v1_total:.2f} s")
        report_v2(secret, public_bytes, ours, n, args.banks, work)


if __name__ == "__main__":
    main()
