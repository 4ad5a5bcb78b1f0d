"""Secure aggregation v2: the policy chooses the protocol; rounds gain its phases.

Policies and rounds that exist already ran v1, so they are marked v1 (the field's default
for new policies is v2), and every stored round snapshot gains the two new fields with the
values it ran under.
"""

from typing import Any

from django.db import migrations, models


def _snapshots_v1(apps: Any, schema_editor: Any) -> None:
    Round = apps.get_model("rounds", "Round")
    for rnd in Round.objects.all():
        snapshot = dict(rnd.policy_snapshot)
        snapshot.setdefault("secure_aggregation", "v1")
        snapshot.setdefault("aggregate_checkers", 0)
        rnd.policy_snapshot = snapshot
        rnd.save(update_fields=["policy_snapshot"])


class Migration(migrations.Migration):
    dependencies = [
        ("rounds", "0004_policy_min_banks_3"),
    ]

    operations = [
        migrations.AddField(
            model_name="roundpolicy",
            name="secure_aggregation",
            field=models.CharField(default="v1", max_length=2),
            preserve_default=False,
        ),
        migrations.RunPython(_snapshots_v1, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="round",
            name="one_round_in_flight",
        ),
        migrations.AddField(
            model_name="roundpolicy",
            name="aggregate_checkers",
            field=models.PositiveIntegerField(
                default=0,
                help_text="v2: how many nodes, chosen by their own coin, recompute the aggregate from the signed submissions before decrypting it; 0 = every node.",
            ),
        ),
        migrations.AlterField(
            model_name="roundpolicy",
            name="secure_aggregation",
            field=models.CharField(
                choices=[
                    (
                        "v2",
                        "v2: masked, seeded, packed (no one short of all other banks reads an update)",
                    ),
                    ("v1", "v1: one shared key (legacy)"),
                ],
                default="v2",
                help_text="The aggregation protocol (docs/secure-aggregation.md).",
                max_length=2,
            ),
        ),
        migrations.AlterField(
            model_name="round",
            name="state",
            field=models.CharField(
                choices=[
                    ("sharing", "Sharing mask keys"),
                    ("open", "Open"),
                    ("unmasking", "Unmasking"),
                    ("aggregating", "Aggregating"),
                    ("published", "Published"),
                    ("failed", "Failed"),
                ],
                db_index=True,
                default="open",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="roundpolicy",
            name="vector_length",
            field=models.PositiveIntegerField(
                help_text="Values in an update: model parameters plus the count and tag slots."
            ),
        ),
        migrations.AddConstraint(
            model_name="round",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state__in", ["sharing", "open", "unmasking", "aggregating"])),
                fields=("state",),
                name="one_round_in_flight",
            ),
        ),
    ]
