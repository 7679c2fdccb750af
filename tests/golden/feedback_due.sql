WITH order_facts AS (
    SELECT o.customer_id,
           MAX(o.placed_at) AS last_order_at
    FROM orders AS o
    WHERE o.placed_at <= TIMESTAMP '2026-11-23 12:00:00'
    GROUP BY o.customer_id
  ),
  customer_facts AS (
    SELECT c."customer_id",
           s.last_order_at AS last_order_at
    FROM customers AS c
    LEFT JOIN order_facts AS s ON s.customer_id = c.customer_id
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE COALESCE((cf."last_order_at" >= TIMESTAMP '2026-11-06 12:00:00' AND cf."last_order_at" < TIMESTAMP '2026-11-13 12:00:00'), FALSE)
ORDER BY cf.customer_id
