WITH order_facts AS (
    SELECT o.customer_id,
           COUNT(*) AS orders_count,
           SUM(o.total) AS total_spent,
           MAX(o.placed_at) AS last_order_at
    FROM orders AS o
    WHERE o.placed_at <= TIMESTAMP '2026-11-23 12:00:00'
    GROUP BY o.customer_id
  ),
  customer_facts AS (
    SELECT c."customer_id",
           COALESCE(s.orders_count, 0) AS orders_count,
           COALESCE(s.total_spent, 0) AS total_spent,
           s.last_order_at AS last_order_at
    FROM customers AS c
    LEFT JOIN order_facts AS s ON s.customer_id = c.customer_id
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE (COALESCE(cf."orders_count" >= 2, FALSE) AND COALESCE(cf."last_order_at" < TIMESTAMP '2026-08-25 12:00:00', FALSE) AND (NOT (COALESCE(cf."total_spent" >= (SELECT MIN(v) FROM (SELECT "total_spent" AS v FROM customer_facts WHERE "total_spent" IS NOT NULL ORDER BY "total_spent" DESC LIMIT (SELECT CAST(FLOOR((COUNT(*) * 1 + 19) * 1.0 / 20) AS BIGINT) FROM customer_facts WHERE "total_spent" IS NOT NULL)) AS ranked), FALSE) AND COALESCE(cf."orders_count" >= 2, FALSE))))
ORDER BY cf.customer_id
