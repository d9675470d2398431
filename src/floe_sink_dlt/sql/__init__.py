"""The ``sql_database`` sink: PostgreSQL (ADBC binary COPY), SQLite and DuckDB.

Modules: :mod:`~floe_sink_dlt.sql.sink` (the sink: ledger, dispositions),
:mod:`~floe_sink_dlt.sql.options` (its keys, checked without pyarrow or a driver),
:mod:`~floe_sink_dlt.sql.target` (URL and table name), :mod:`~floe_sink_dlt.sql.types`
(Arrow -> SQL types), :mod:`~floe_sink_dlt.sql.evolution` (schema evolution of an existing
table), :mod:`~floe_sink_dlt.sql.dialect` (shared SQL) and one module per database.
"""

from floe_sink_dlt.sql.sink import DEFAULT_BATCH_SIZE, WRITE_DISPOSITIONS, SqlDatabaseSink

__all__ = ["DEFAULT_BATCH_SIZE", "WRITE_DISPOSITIONS", "SqlDatabaseSink"]
