"""Upsell and cross-sell: products often bought together with what a customer bought,
excluding what they already have; best sellers fill the rest.

Co-purchase counts and best sellers are computed once per run (one query each, inside the
data engine). On files (DuckDB) every buyer's recommendations (top co-purchases not owned
yet, then best sellers) are chosen once per run for everyone, in set-based queries (once per
distinct set of owned products, which many buyers share), into a temporary table, and a
batch reads its rows with one query taking its ids as a parameter. On a database, one query
per batch fetches what the batch's customers own and the scoring is a vectorized pandas
join. Neither loops over customers to score.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from clvflow.data.sources import ShopData, in_list
from clvflow.segments.attributes import sql_timestamp

BEST_SELLERS = 20


class Recommender:
    def __init__(self, data: ShopData, as_of: dt.datetime, limit: int = 3) -> None:
        self.data = data
        self.limit = limit
        self.as_of = as_of
        self.enabled = data.has("order_items") and data.has("products")
        self._table: str | None = None
        if self.enabled:
            self._prepare()

    def _items_cte(self) -> str:
        return (
            "items AS (SELECT DISTINCT i.order_id, i.product_id FROM order_items AS i "
            "JOIN orders AS o ON o.order_id = i.order_id "
            f"WHERE o.placed_at <= {sql_timestamp(self.as_of)})"
        )

    def _prepare(self) -> None:
        data = self.data
        self.pairs = data.frame(
            f"""{data.with_clause(self._items_cte())}SELECT a.product_id AS src,
                       b.product_id AS dst, COUNT(*) AS together
                FROM items AS a JOIN items AS b
                  ON a.order_id = b.order_id AND a.product_id <> b.product_id
                GROUP BY a.product_id, b.product_id"""
        )
        best = data.rows(
            f"""{data.with_clause(self._items_cte())}SELECT product_id, COUNT(*) AS n
                FROM items GROUP BY product_id ORDER BY n DESC, product_id
                LIMIT {BEST_SELLERS}"""
        )
        self.best = [str(r[0]) for r in best]
        url = "url" if "url" in data.columns["products"] else "NULL AS url"
        self.products: dict[str, dict[str, Any]] = {
            str(pid): {
                "product_id": str(pid),
                "name": str(name),
                "category": str(category),
                "price": float(price),
                "url": purl,
            }
            for pid, name, category, price, purl in data.rows(
                f"{data.with_clause()}SELECT product_id, name, category, price, {url} FROM products"
            )
        }
        # A customer who owns nothing gets the best sellers (as ``_fill`` gives them).
        self._fallback = [self.products[p] for p in self.best[: self.limit] if p in self.products]

    def _prepare_table(self) -> str:
        """A temporary table (DuckDB), once per run: every buyer's recommendations in
        order — top co-purchases not owned yet, then the best sellers not owned nor
        chosen yet — as one row per customer (the scored products, the best sellers). The
        same choice as ``_fill``; customers without items get the best sellers
        (``_fallback``).

        The choice depends only on the set of products a buyer owns, and many buyers own
        the same set: it is made once per distinct set (``baskets``), then each buyer takes
        their set's."""
        con = self.data.con
        assert con is not None
        suffix = uuid.uuid4().hex[:12]
        pairs, owned, best, buyers, baskets, recs = (
            f"clvflow_{t}_{suffix}" for t in ("pairs", "owned", "best", "buyers", "baskets", "recs")
        )
        con.register(f"{pairs}_frame", self.pairs)
        con.execute(
            f"CREATE TEMP TABLE {pairs} AS SELECT CAST(src AS VARCHAR) AS src, "
            f"CAST(dst AS VARCHAR) AS dst, together FROM {pairs}_frame"
        )
        con.unregister(f"{pairs}_frame")
        con.execute(
            f"""CREATE TEMP TABLE {buyers} AS
                SELECT customer_id, basket, DENSE_RANK() OVER (ORDER BY basket) AS basket_id
                FROM (
                  SELECT o.customer_id, list(DISTINCT i.product_id ORDER BY i.product_id)
                    AS basket
                  FROM orders AS o JOIN order_items AS i ON i.order_id = o.order_id
                  WHERE o.placed_at <= {sql_timestamp(self.as_of)}
                  GROUP BY o.customer_id
                )"""
        )
        con.execute(
            f"""CREATE TEMP TABLE {owned} AS  -- the products of each distinct set
                SELECT basket_id, unnest(basket) AS product_id
                FROM (SELECT DISTINCT basket_id, basket FROM {buyers})"""
        )
        con.execute(f"CREATE TEMP TABLE {best} (product_id VARCHAR, pos INTEGER)")
        if self.best:
            con.executemany(
                f"INSERT INTO {best} VALUES (?, ?)", [(p, i) for i, p in enumerate(self.best)]
            )
        con.execute(
            f"""CREATE TEMP TABLE {baskets} AS
                WITH scored AS (
                  SELECT m.basket_id, p.dst AS product_id, SUM(p.together) AS together
                  FROM {owned} AS m JOIN {pairs} AS p ON p.src = m.product_id
                  GROUP BY m.basket_id, p.dst
                ),
                fresh AS (
                  SELECT s.* FROM scored AS s ANTI JOIN {owned} AS m
                    ON m.basket_id = s.basket_id AND m.product_id = s.product_id
                ),
                ranked AS (
                  SELECT basket_id, product_id, ROW_NUMBER() OVER (
                    PARTITION BY basket_id ORDER BY together DESC, product_id) AS position
                  FROM fresh QUALIFY position <= {self.limit}
                ),
                chosen AS (SELECT basket_id, COUNT(*) AS n FROM ranked GROUP BY basket_id),
                sets AS (SELECT DISTINCT basket_id FROM {owned}),
                short AS (  -- the sets with fewer than limit co-purchases: filled up
                  SELECT b.basket_id FROM sets AS b LEFT JOIN chosen AS n
                    ON n.basket_id = b.basket_id
                  WHERE COALESCE(n.n, 0) < {self.limit}
                ),
                candidates AS (
                  SELECT b.basket_id, t.product_id, t.pos FROM short AS b CROSS JOIN {best} AS t
                ),
                free AS (
                  SELECT c.* FROM candidates AS c
                  ANTI JOIN {owned} AS m
                    ON m.basket_id = c.basket_id AND m.product_id = c.product_id
                  ANTI JOIN ranked AS r
                    ON r.basket_id = c.basket_id AND r.product_id = c.product_id
                ),
                fill AS (
                  SELECT f.basket_id, f.product_id, COALESCE(n.n, 0) + ROW_NUMBER() OVER (
                    PARTITION BY f.basket_id ORDER BY f.pos) AS position
                  FROM free AS f LEFT JOIN chosen AS n ON n.basket_id = f.basket_id
                ),
                picked AS (
                  SELECT basket_id, product_id, position, TRUE AS scored FROM ranked
                  UNION ALL
                  SELECT basket_id, product_id, position, FALSE FROM fill
                  WHERE position <= {self.limit}
                )
                SELECT b.basket_id,  -- every set, also one left with nothing to get
                       list(p.product_id ORDER BY p.position) FILTER (WHERE p.scored) AS scored,
                       list(p.product_id ORDER BY p.position) FILTER (WHERE NOT p.scored)
                         AS filled
                FROM sets AS b LEFT JOIN picked AS p ON p.basket_id = b.basket_id
                GROUP BY b.basket_id"""
        )
        con.execute(
            f"""CREATE TEMP TABLE {recs} AS
                SELECT b.customer_id, s.scored, s.filled
                FROM {buyers} AS b JOIN {baskets} AS s ON s.basket_id = b.basket_id"""
        )
        for table in (pairs, owned, best, buyers, baskets):
            con.execute(f"DROP TABLE {table}")
        return recs

    def prepare(self) -> None:
        """Choose everyone's recommendations now (on files) rather than on the first batch."""
        if self.enabled and self.data.con is not None and self._table is None:
            self._table = self._prepare_table()

    def table(self) -> str:
        """The temporary table of ``_prepare_table`` (on files)."""
        if self._table is None:
            self._table = self._prepare_table()
        return self._table

    def pick(self, scored: list[str] | None, filled: list[str] | None) -> list[dict[str, Any]]:
        """A buyer's products from the table's two lists (best sellers missing from the
        products table are skipped, as ``_fill`` skips them)."""
        products = self.products
        chosen = [products[p] for p in scored] if scored else []
        if filled:
            chosen += [products[p] for p in filled if p in products]
        return chosen

    def fallback(self) -> list[dict[str, Any]]:
        """What a customer who owns nothing gets: the best sellers."""
        return list(self._fallback)

    def _in_engine(self, customer_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """One query per batch against the table of ``_prepare_table``."""
        con = self.data.con
        assert con is not None
        rows = con.execute(
            f"SELECT * FROM {self.table()} WHERE customer_id IN (SELECT unnest($1::VARCHAR[]))",
            [list(customer_ids)],
        ).fetchall()
        found = {cid: self.pick(scored, filled) for cid, scored, filled in rows}
        return {c: found[c] if c in found else self.fallback() for c in customer_ids}

    def for_customers(self, customer_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """customer_id → up to ``limit`` products ``{product_id, name, category, price, url}``."""
        out: dict[str, list[dict[str, Any]]] = {c: [] for c in customer_ids}
        if not self.enabled or not customer_ids:
            return out
        if self.data.con is not None:
            return self._in_engine(customer_ids)
        data = self.data
        owned = data.frame(
            f"""{data.with_clause()}SELECT DISTINCT o.customer_id, i.product_id
                FROM orders AS o JOIN order_items AS i ON i.order_id = o.order_id
                WHERE o.customer_id IN {in_list(customer_ids)}
                  AND o.placed_at <= {sql_timestamp(self.as_of)}"""
        ).astype({"customer_id": "string", "product_id": "string"})
        pairs = self.pairs.astype({"src": "string", "dst": "string"})
        merged = owned.merge(pairs, left_on="product_id", right_on="src")
        grouped = merged.groupby(["customer_id", "dst"], as_index=False).agg(
            together=("together", "sum")
        )
        scored = pd.DataFrame(grouped).rename(columns={"dst": "product_id"})
        scored = scored.merge(owned, on=["customer_id", "product_id"], how="left", indicator=True)
        scored = scored[scored["_merge"] == "left_only"].sort_values(
            ["customer_id", "together", "product_id"], ascending=[True, False, True]
        )
        top = scored.groupby("customer_id").head(self.limit)
        return self._fill(
            out,
            list(zip(top["customer_id"], top["product_id"], strict=True)),
            list(zip(owned["customer_id"], owned["product_id"], strict=True)),
        )

    def _fill(
        self,
        out: dict[str, list[dict[str, Any]]],
        top: Sequence[tuple[Any, Any]],
        owned: Sequence[tuple[Any, Any]],
    ) -> dict[str, list[dict[str, Any]]]:
        """The scored products in order, then best sellers the customer lacks."""
        has: dict[str, set[str]] = {}
        for cid, pid in owned:
            has.setdefault(str(cid), set()).add(str(pid))
        for cid, pid in top:
            out[str(cid)].append(self.products[str(pid)])
        for cid, chosen in out.items():
            if len(chosen) < self.limit:
                taken = has.get(cid, set()) | {p["product_id"] for p in chosen}
                extra = [p for p in self.best if p not in taken][: self.limit - len(chosen)]
                chosen.extend(self.products[p] for p in extra if p in self.products)
        return out
