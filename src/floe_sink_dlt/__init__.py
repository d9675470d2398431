"""floe_sink_dlt: the reference floe-sink plugin, built on dlt (rest_api, sql_database)."""
