"""The feature engine on Spark: the same SQL (`models.features_sql`) run by Spark SQL.

For a bank whose transactions already live on a cluster. It reads staged rows (the columns
``bank_node.staging`` writes: ``rid``, ``tick``, ``secs``, the text and amount columns, and
the carried ``source``, ``line``, ``day``, ``label``), runs `features_query` unchanged, and
writes Parquet partitioned by ``day=YYYY-MM-DD/``: the layout a streaming node reads
(``[training] data = "stream"``, `models.stream_data.parquet_files`), as DuckDB writes it
on one machine. Run it where Spark runs::

    spark-submit bank_node/features_spark.py STAGED_PARQUET OUT_DIR
    python -m bank_node.features_spark STAGED_PARQUET OUT_DIR --master "local[2]"

PySpark is an optional dependency (``pip install 'consortium[spark]'``) and needs Java.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from models.features_sql import CARRY, features_query

STAGED_VIEW = "consortium_staged"


def spark_session(master: str | None = None, app: str = "consortium-features") -> Any:
    """A Spark session in UTC (``secs`` and ``day`` are UTC), without the web UI.

    ``master``: e.g. ``"local[2]"``; None keeps what spark-submit configured.
    """
    # Imported here: PySpark is optional, and only this entry point needs it.
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app)
    if master is not None:
        builder = builder.master(master)
    return (
        builder.config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def spark_features(spark: Any, staged: str, out: str, *, partition_by_date: bool = True) -> None:
    """Features of the staged Parquet at ``staged`` written to ``out`` (overwritten).

    ``partition_by_date``: one ``day=...`` folder per date; otherwise one directory of
    Parquet parts in ``rid`` order (with ``day`` kept as a column).
    """
    spark.read.parquet(staged).createOrReplaceTempView(STAGED_VIEW)
    frame = spark.sql(features_query(STAGED_VIEW, carry=CARRY))
    if partition_by_date:
        frame.write.mode("overwrite").partitionBy("day").parquet(out)
    else:
        frame.orderBy("rid").write.mode("overwrite").parquet(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bank_node.features_spark", description=__doc__)
    parser.add_argument("staged", help="staged Parquet (bank-node's staging layout)")
    parser.add_argument("out", help="output directory: Parquet partitioned by day")
    parser.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")
    args = parser.parse_args(argv)
    spark = spark_session(args.master)
    try:
        spark_features(spark, args.staged, args.out)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
