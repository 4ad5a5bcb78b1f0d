"""Statistics rounds: a round kind, an explicit vector length, and the policy switch."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("rounds", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="roundpolicy",
            name="normalize_features",
            field=models.BooleanField(
                default=True,
                help_text="Run a statistics round first: an encrypted sum of feature moments "
                "gives every bank the same consortium-wide normalisation.",
            ),
        ),
        migrations.AddField(
            model_name="round",
            name="kind",
            field=models.CharField(
                choices=[("training", "Training"), ("statistics", "Feature statistics")],
                default="training",
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="round",
            name="vector_length",
            field=models.PositiveIntegerField(
                default=0, help_text="Values every update must carry."
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="round",
            name="stats_round",
            field=models.ForeignKey(
                blank=True,
                help_text="The statistics round whose aggregate normalises this round's features.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="rounds.round",
            ),
        ),
    ]
