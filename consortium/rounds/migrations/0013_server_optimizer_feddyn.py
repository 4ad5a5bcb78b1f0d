"""FedDyn joins the server optimisers a policy may name (a choice only: no data changes)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rounds", "0012_counterparty_sketch"),
    ]

    operations = [
        migrations.AlterField(
            model_name="roundpolicy",
            name="server_optimizer",
            field=models.CharField(
                choices=[
                    ("fedavg", "FedAvg: the average itself"),
                    ("fedavgm", "FedAvgM: server momentum"),
                    ("fedadam", "FedAdam (Reddi et al. 2021)"),
                    ("fedyogi", "FedYogi (Reddi et al. 2021)"),
                    ("feddyn", "FedDyn (Acar et al. 2021): alpha = FedProx mu"),
                ],
                default="fedavg",
                help_text="Applied by every node to the decrypted average; fedavg = today's model.",
                max_length=10,
            ),
        ),
    ]
