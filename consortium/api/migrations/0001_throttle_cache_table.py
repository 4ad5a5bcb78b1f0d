"""Create the database cache table that rate-limit counters live in (settings.CACHES).

``createcachetable`` is idempotent and creates the table of every DatabaseCache in
settings, so `migrate` is the only deployment step (the Helm hook Job runs it).
"""

from django.apps.registry import Apps
from django.core.management import call_command
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def create_cache_table(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


def drop_cache_table(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    schema_editor.execute("DROP TABLE IF EXISTS consortium_throttle_cache")


class Migration(migrations.Migration):
    dependencies = []  # the cache table needs no model of ours

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
