WITH order_facts AS (
    SELECT o.customer_id,
           COUNT(*) AS orders_count,
           MIN(o.placed_at) AS first_order_at
    FROM orders AS o
    WHERE o.placed_at <= TIMESTAMP '2026-11-23 12:00:00'
    GROUP BY o.customer_id
  ),
  customer_facts AS (
    SELECT c."customer_id",
           COALESCE(s.orders_count, 0) AS orders_count,
           s.first_order_at AS first_order_at
    FROM customers AS c
    LEFT JOIN order_facts AS s ON s.customer_id = c.customer_id
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE (COALESCE(cf."orders_count" = 1, FALSE) AND COALESCE(cf."first_order_at" BETWEEN TIMESTAMP '2026-11-16 12:00:00' AND TIMESTAMP '2026-11-23 12:00:00', FALSE))
ORDER BY cf.customer_id
