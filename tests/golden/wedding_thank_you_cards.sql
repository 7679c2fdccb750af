WITH item_facts AS (
    SELECT o.customer_id,
           bool_or(o.placed_at BETWEEN TIMESTAMP '2026-10-12 12:00:00' AND TIMESTAMP '2026-11-23 12:00:00' AND COALESCE(p."category" = 'thank-you-cards', FALSE)) AS a1
    FROM orders AS o
    JOIN order_items AS i ON i.order_id = o.order_id
    LEFT JOIN products AS p ON p.product_id = i.product_id
    WHERE o.placed_at <= TIMESTAMP '2026-11-23 12:00:00'
      AND o.placed_at BETWEEN TIMESTAMP '2026-10-12 12:00:00' AND TIMESTAMP '2026-11-23 12:00:00' AND COALESCE(p."category" = 'thank-you-cards', FALSE)
    GROUP BY o.customer_id
  ),
  customer_facts AS (
    SELECT c."customer_id",
           c."role",
           c."wedding_date",
           COALESCE(it.a1, FALSE) AS "orders__1_any"
    FROM customers AS c
    LEFT JOIN item_facts AS it ON it.customer_id = c.customer_id
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE ((COALESCE(cf."role" IN ('couple', 'bridesmaid'), FALSE) AND COALESCE(cf."wedding_date" IS NOT NULL, FALSE)) AND COALESCE(cf."wedding_date" BETWEEN DATE '2026-10-12' AND DATE '2026-11-23', FALSE) AND (NOT cf."orders__1_any"))
ORDER BY cf.customer_id
