"""Seed the quickstart's Gold table: ``gold.customers`` in the embedded Iceberg catalog.

Writes a few thousand realistic, deterministic customer rows (fixed random seed, no network)
with pyiceberg to the SQL-on-SQLite catalog under ``--state-dir`` (default ``./.floe``), the
same catalog ``floe-sink run`` reads when manifest.yaml names none.

    python seed.py                 # 5,000 rows; skips a table that already exists
    python seed.py --replace       # drop and write it again
    python seed.py --rows 100000   # more rows
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.source import load_catalog, source_config

TABLE = "gold.customers"

FIRST_NAMES = [
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Arjun",
    "Bea",
    "Carlos",
    "Chen",
    "Chloe",
    "Dana",
    "Diego",
    "Elena",
    "Emma",
    "Farah",
    "Felix",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jamal",
    "Jin",
    "Julia",
    "Kai",
    "Kenji",
    "Lars",
    "Laura",
    "Leila",
    "Liam",
    "Lucia",
    "Maya",
    "Mateo",
    "Mia",
    "Nadia",
    "Noah",
    "Nora",
    "Olga",
    "Omar",
    "Paula",
    "Priya",
    "Rafael",
    "Rosa",
    "Sam",
    "Sara",
    "Sofia",
    "Tariq",
    "Theo",
    "Yara",
    "Yusuf",
    "Zoe",
]
LAST_NAMES = [
    "Abebe",
    "Adams",
    "Alvarez",
    "Bauer",
    "Becker",
    "Chen",
    "Cohen",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Hansen",
    "Ivanova",
    "Jensen",
    "Kato",
    "Khan",
    "Kim",
    "Kowalski",
    "Larsen",
    "Lopez",
    "Martin",
    "Meyer",
    "Moreau",
    "Murphy",
    "Nakamura",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Petrov",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Torres",
    "Nguyen",
    "Walsh",
    "Weber",
    "Wong",
    "Yilmaz",
    "Zhang",
]
CITIES = {
    "FR": ["Paris", "Lyon", "Marseille", "Toulouse", "Nantes"],
    "DE": ["Berlin", "Munich", "Hamburg", "Cologne", "Leipzig"],
    "US": ["New York", "Austin", "Chicago", "Seattle", "Denver"],
    "GB": ["London", "Manchester", "Leeds", "Bristol", "Glasgow"],
    "ES": ["Madrid", "Barcelona", "Valencia", "Seville", "Bilbao"],
    "JP": ["Tokyo", "Osaka", "Kyoto", "Sapporo", "Fukuoka"],
    "BR": ["Sao Paulo", "Rio de Janeiro", "Recife", "Curitiba", "Salvador"],
    "IN": ["Bengaluru", "Mumbai", "Delhi", "Pune", "Chennai"],
}
COUNTRY_SHARE = [0.16, 0.15, 0.24, 0.13, 0.08, 0.08, 0.08, 0.08]
DOMAINS = ["example.com", "mail.example.org", "example.net"]
SIGNUP_EPOCH_DAYS = 18_262  # 2020-01-01
UPDATED_EPOCH_US = 1_790_812_800_000_000  # 2026-10-01T00:00:00Z


class _Random:
    """Deterministic uniform draws from Arrow's generator: vectorised, no numpy needed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def uniform(self, rows: int) -> pa.Array:
        self.seed += 1
        return pc.random(rows, initializer=self.seed)

    def index(self, rows: int, size: int) -> pa.Array:
        """Integers in ``[0, size)``."""
        scaled = pc.floor(pc.multiply(self.uniform(rows), size))
        return pc.min_element_wise(pc.cast(scaled, pa.int64()), size - 1)

    def weighted(self, rows: int, shares: list[float]) -> pa.Array:
        """Indices drawn with the given shares (which add up to 1)."""
        draw = self.uniform(rows)
        index = pa.nulls(rows, pa.int64()).fill_null(0)
        bound = 0.0
        for share in shares[:-1]:
            bound += share
            index = pc.add(index, pc.cast(pc.greater(draw, bound), pa.int64()))
        return index


def make_customers(rows: int, *, seed: int = 42, first_id: int = 1) -> pa.Table:
    """``rows`` customers, the same for the same ``seed`` (vectorised: millions are fine)."""
    rng = _Random(seed)
    ids = pa.array(range(first_id, first_id + rows), pa.int64())
    first = pa.array(FIRST_NAMES).take(rng.index(rows, len(FIRST_NAMES)))
    last = pa.array(LAST_NAMES).take(rng.index(rows, len(LAST_NAMES)))
    country_index = rng.weighted(rows, COUNTRY_SHARE)
    country = pa.array(list(CITIES)).take(country_index)
    cities = pa.array([city for names in CITIES.values() for city in names])
    city = cities.take(pc.add(pc.multiply(country_index, 5), rng.index(rows, 5)))
    # orders: a long-tailed count (exponential, mean ~6); value: orders x basket size
    tail = pc.negate(pc.ln(pc.subtract(1.0, rng.uniform(rows))))
    orders = pc.cast(pc.min_element_wise(pc.floor(pc.multiply(tail, 6.0)), 80), pa.int32())
    basket = pc.add(15.0, pc.multiply(rng.uniform(rows), 120.0))
    lifetime_value = pc.round(pc.multiply(pc.cast(orders, pa.float64()), basket), 2)
    segment = pc.case_when(
        pc.make_struct(pc.equal(orders, 0), pc.greater(lifetime_value, 900.0), pc.less(orders, 3)),
        "new",
        "vip",
        "at_risk",
        "regular",
    )
    signup = pc.cast(
        pc.cast(pc.add(rng.index(rows, 6 * 365), SIGNUP_EPOCH_DAYS), pa.int32()), pa.date32()
    )
    updated = pc.cast(
        pc.add(pc.multiply(rng.index(rows, 86_400 * 30), 1_000_000), UPDATED_EPOCH_US),
        pa.timestamp("us", tz="UTC"),
    )
    local = pc.binary_join_element_wise(
        pc.utf8_lower(first), pc.utf8_lower(last), pc.cast(ids, pa.string()), "."
    )
    domain = pa.array(DOMAINS).take(rng.index(rows, len(DOMAINS)))
    email = pc.binary_join_element_wise(local, domain, "@")
    return pa.table(
        {
            "customer_id": ids,
            "email": email,
            "first_name": first,
            "last_name": last,
            "country": country,
            "city": city,
            "segment": segment,
            "orders_count": orders,
            "lifetime_value": lifetime_value,
            "is_active": pc.greater(rng.uniform(rows), 0.12),
            "signup_date": signup,
            "updated_at": updated,
        }
    )


def seed(
    *,
    rows: int = 5_000,
    state_dir: Path = Path(".floe"),
    table: str = TABLE,
    replace: bool = False,
    chunk_rows: int = 1_000_000,
    row_group_rows: int | None = None,
) -> tuple[bool, int]:
    """Write ``table`` to the embedded catalog under ``state_dir``.

    Large tables are appended in chunks of ``chunk_rows`` (one data file each), so seeding
    never holds more than a chunk in memory. ``row_group_rows`` sets the Parquet row-group
    size (``write.parquet.row-group-limit``; pyiceberg's default otherwise).

    Returns:
        ``(written, rows in the table)``: ``written`` is False when it existed already.
    """
    config = source_config({"table": table, "state_dir": str(state_dir)})
    catalog = load_catalog(config)
    namespace = table.rpartition(".")[0]
    catalog.create_namespace_if_not_exists(namespace)
    if catalog.table_exists(table):
        if not replace:
            existing = catalog.load_table(table)
            return False, existing.scan().count()
        catalog.purge_table(table)
    schema = make_customers(1).schema
    properties = {}
    if row_group_rows:
        properties["write.parquet.row-group-limit"] = str(row_group_rows)
    iceberg_table = catalog.create_table(table, schema=schema, properties=properties)
    written = 0
    chunk = 0
    while written < rows:
        size = min(chunk_rows, rows - written)
        iceberg_table.append(make_customers(size, seed=42 + chunk, first_id=written + 1))
        written += size
        chunk += 1
    return True, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--state-dir", type=Path, default=Path(".floe"))
    parser.add_argument("--table", default=TABLE)
    parser.add_argument("--replace", action="store_true", help="drop and rewrite the table")
    args = parser.parse_args()
    started = datetime.now(UTC)
    written, rows = seed(
        rows=args.rows, state_dir=args.state_dir, table=args.table, replace=args.replace
    )
    seconds = (datetime.now(UTC) - started).total_seconds()
    if written:
        print(
            f"seeded {args.table}: {rows:,} customer rows in {seconds:.1f} s "
            f"(catalog under {args.state_dir.resolve()})"
        )
    else:
        print(f"{args.table} already seeded ({rows:,} rows); --replace writes it again")


if __name__ == "__main__":
    main()
