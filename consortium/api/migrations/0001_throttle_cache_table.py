"""Create the database cache table that rate-limit counters live in (settings.CACHES).

``createcachetable`` is idempotent and creates the table of every DatabaseCache in
settings, so `migrate` is the only deployment step (the Helm hook Job runs it).
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute("DROP TABLE IF EXISTS consortium_throttle_cache")


class Migration(migrations.Migration):
    dependencies: list = []

    operations = [migrations.RunPython(create_cache_table, drop_cache_table)]
