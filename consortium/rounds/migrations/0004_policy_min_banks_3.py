"""min_banks is at least 3 (issue 19): with two banks each learns the other's update."""

from django.core.validators import MinValueValidator
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def raise_min_banks(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # The new check constraint would refuse existing rows below the floor. A round keeps its
    # own frozen snapshot, so raising the policy row rewrites no round's history.
    policy = apps.get_model("rounds", "RoundPolicy")
    policy.objects.filter(min_banks__lt=3).update(min_banks=3)


class Migration(migrations.Migration):
    dependencies = [("rounds", "0003_privacy_budget")]

    operations = [
        migrations.RemoveConstraint(model_name="roundpolicy", name="policy_min_banks_2"),
        migrations.RunPython(raise_min_banks, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="roundpolicy",
            name="min_banks",
            field=models.PositiveIntegerField(
                default=3,
                validators=[
                    MinValueValidator(
                        3,
                        message="min_banks must be at least 3: with two banks each learns "
                        "the other's update from the aggregate by subtraction",
                    )
                ],
            ),
        ),
        migrations.AddConstraint(
            model_name="roundpolicy",
            constraint=models.CheckConstraint(
                condition=models.Q(min_banks__gte=3), name="policy_min_banks_3"
            ),
        ),
    ]
