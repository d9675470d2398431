"""``floe-sink init``: a commented starting project for one sink type.

:func:`project_files` gives the files (``floe.yaml``, ``manifest.yaml`` and a ``secrets/``
folder laid out as a mounted Kubernetes Secret, with a placeholder value and no credential);
:func:`write_project` writes them, refusing to overwrite a file unless asked to. What is
written is valid as it stands: ``floe-sink validate floe.yaml --secrets-dir secrets``
accepts it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SINK_TYPES", "existing_files", "project_files", "write_project"]

SINK_TYPES = ("rest_api", "sql_database")
"""The sink types ``init`` has a template for (the reference plugin's)."""

_FLOE_HEADER = """\
# floe.yaml: the data team's file. Which Gold tables go where.
#
#   floe-sink validate floe.yaml --secrets-dir secrets              # check everything
#   floe-sink run floe.yaml --secrets-dir secrets --dry-run         # what would be sent
#   floe-sink run floe.yaml --secrets-dir secrets                   # send it
#
# Credentials never live here (keys such as password or token are refused): each
# destination names a secret, connection_secret_ref, read from secrets/<name>/<key>.
# Every key is described in docs/configuration.md; `floe-sink schema floe` prints the
# JSON Schema for editors.
"""

_FLOE_YAML = {
    "rest_api": _FLOE_HEADER
    + """\
destinations:
  - name: crm_contacts                  # letters, digits, '-' and '_'; unique in the file
    description: Active customers, pushed to the CRM's contacts API
    sink_type: rest_api                 # `floe-sink sinks` lists the sink types installed
    connection_secret_ref: crm-api      # secrets/crm-api/token -> Authorization: Bearer ...
    source_table: gold.customers        # the Iceberg table to read: namespace.table
    row_filter: "is_active = true"      # optional: only these rows (pyiceberg syntax)
    field_mapping:                      # optional: source column -> field sent; only the
      customer_id: external_id          # mapped columns are sent (default: every column)
      email: email
    config:
      url: https://crm.example.com/api/contacts   # each batch is POSTed there as JSON
      records_key: contacts             # optional: send {"contacts": [...]}, not [...]
    batch_size: 200                     # rows per request (default: 500)
    # retry: {max_attempts: 5, initial_wait: 0.5, max_wait: 30}   # 429 and 5xx are retried
    # enabled: false                    # keep it declared, skip it when running
""",
    "sql_database": _FLOE_HEADER
    + """\
destinations:
  - name: customers_db                  # letters, digits, '-' and '_'; unique in the file
    description: Active customers, for the support team's operational database
    sink_type: sql_database             # `floe-sink sinks` lists the sink types installed
    connection_secret_ref: ops-db       # secrets/ops-db/url: the database URL
    source_table: gold.customers        # the Iceberg table to read: namespace.table
    row_filter: "is_active = true"      # optional: only these rows (pyiceberg syntax)
    field_mapping:                      # optional: source column -> column written; only
      customer_id: customer_id          # the mapped columns are written (default: all)
      email: email
      country: country_code
    config:
      table: customers                  # created if missing (schema.table in PostgreSQL)
    write_disposition: merge            # append (default) | merge (upsert) | replace
    primary_key: [customer_id]          # what merge upserts on
    batch_size: 1000                    # rows per batch written
    # retry: {max_attempts: 5, initial_wait: 0.5, max_wait: 30}
    # enabled: false                    # keep it declared, skip it when running
""",
}

_MANIFEST_YAML = """\
# manifest.yaml: the platform team's file: governance, and where the lakehouse is.
# floe-sink reads it from beside floe.yaml (or --manifest, or $FLOE_MANIFEST).
scope: enterprise                       # enterprise | domain | none
approved_sinks: [{sink_type}]  # the sink types data teams may use (enterprise only)

# Without a catalog: section, floe-sink reads the embedded default: a pyiceberg SQL
# catalog on SQLite under ./.floe (or --state-dir). To read from an Iceberg REST catalog
# such as Apache Polaris instead:
# catalog:
#   name: polaris
#   type: rest
#   uri: https://polaris.example.com/api/catalog
#   warehouse: gold
#   credential_secret_ref: polaris-client   # its keys (credential, ...) come from a secret
"""

_SECRET = {
    # sink type -> (connection_secret_ref, key, placeholder value, what it is)
    "rest_api": (
        "crm-api",
        "token",
        "replace-with-the-api-token",
        "the API token, sent as `Authorization: Bearer <token>`",
    ),
    "sql_database": (
        "ops-db",
        "url",
        "sqlite:///floe-sink.sqlite",
        "the database URL: `postgresql://user:password@host:5432/db`, `duckdb:///file.duckdb`, "
        "or (as written) a SQLite file in the working directory",
    ),
}

_SECRETS_README = """\
# secrets/

One folder per `connection_secret_ref` of floe.yaml, one file per key, the file's content
being the value: the layout of a Kubernetes Secret mounted as a volume.

- `{ref}/{key}`: {what}. `floe-sink init` wrote a placeholder there,
  `{placeholder}`: replace it with the real value.

Run with `floe-sink run floe.yaml --secrets-dir secrets` (or `FLOE_SECRETS_DIR=secrets`). In
Kubernetes, mount the Secret `{ref}` at `/var/run/secrets/floe/{ref}` instead, the default
secrets directory. A trailing newline of a value is ignored.

`.gitignore` keeps everything here but this file out of version control: credentials never
belong in a repository.
"""

_SECRETS_GITIGNORE = """\
# Secret values never go into version control: only this file and the README do.
*
!.gitignore
!README.md
"""


def project_files(sink_type: str) -> dict[str, str]:
    """The files of a new project for ``sink_type``: relative path -> text.

    Raises:
        ValueError: ``sink_type`` has no template (see :data:`SINK_TYPES`).
    """
    if sink_type not in SINK_TYPES:
        raise ValueError(f"no template for sink type {sink_type!r}; use one of {SINK_TYPES}")
    ref, key, placeholder, what = _SECRET[sink_type]
    return {
        "floe.yaml": _FLOE_YAML[sink_type],
        "manifest.yaml": _MANIFEST_YAML.format(sink_type=sink_type),
        "secrets/README.md": _SECRETS_README.format(
            ref=ref, key=key, placeholder=placeholder, what=what
        ),
        "secrets/.gitignore": _SECRETS_GITIGNORE,
        f"secrets/{ref}/{key}": placeholder + "\n",
    }


def existing_files(directory: Path, sink_type: str) -> list[str]:
    """The files of :func:`project_files` that already exist under ``directory``."""
    return [name for name in project_files(sink_type) if (directory / name).exists()]


def write_project(directory: Path, sink_type: str) -> list[str]:
    """Write the project files under ``directory`` (created if missing), overwriting.

    Secret files are readable by their owner only. Returns the relative paths written.
    """
    files = project_files(sink_type)
    for name, text in files.items():
        path = directory / name
        secret = name.startswith("secrets/") and name.count("/") == 2
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if secret else 0o777)
        path.write_text(text, encoding="utf-8")
        if secret:
            path.chmod(0o600)
    return list(files)
