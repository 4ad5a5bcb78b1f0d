"""Signed checkpoints, and the database itself refusing UPDATE and DELETE on the trail.

The triggers are what makes the trail append-only for anyone going through SQL, not
only through Django. An attacker with superuser rights can still disable them; the
hash chain and the signed checkpoints are what catch that.

TRUNCATE is deliberately not blocked on PostgreSQL: Django's ``flush`` (and so every
``transaction=True`` test) empties tables with TRUNCATE. A truncated trail still fails
``audit_verify``: the head row and the signed checkpoints outlive it.

On SQLite, a later migration that rebuilds ``audit_auditevent`` or ``audit_checkpoint``
(SQLite alters most columns by copying the table) drops these triggers: recreate them
in that migration.
"""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

TABLES = ("audit_auditevent", "audit_checkpoint")

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME;
END
$$;
"""


def _install(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
            )
    elif vendor == "sqlite":
        for table in TABLES:
            for op in ("UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: {op} on "
                    f"{table} is refused'); END"
                )
    else:
        raise NotImplementedError(
            f"no append-only guard for the {vendor} backend: add one to this migration"
        )


def _remove(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        elif vendor == "sqlite":
            for op in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS audit_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="Checkpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("seq", models.PositiveBigIntegerField(db_index=True)),
                ("head_hash", models.CharField(max_length=64)),
                ("signed_at", models.DateTimeField()),
                ("reason", models.CharField(max_length=200)),
                (
                    "public_key",
                    models.CharField(help_text="base64 raw Ed25519 public key", max_length=64),
                ),
                (
                    "signature",
                    models.CharField(help_text="base64 Ed25519 signature", max_length=100),
                ),
            ],
            options={
                "ordering": ["seq", "id"],
            },
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["created_at"], name="audit_event_created_at"),
        ),
        migrations.RunPython(_install, _remove),
    ]
