WITH order_facts AS (
    SELECT o.customer_id,
           COUNT(*) AS orders_count,
           SUM(o.total) AS total_spent
    FROM orders AS o
    WHERE o.placed_at <= TIMESTAMP '2026-11-23 12:00:00'
    GROUP BY o.customer_id
  ),
  customer_facts AS (
    SELECT c."customer_id",
           COALESCE(s.orders_count, 0) AS orders_count,
           s.total_spent AS historical_clv,
           pr.p_alive AS p_alive
    FROM customers AS c
    LEFT JOIN order_facts AS s ON s.customer_id = c.customer_id
    LEFT JOIN "clvflow_predictions_20261123_365" AS pr ON pr.customer_id = c.customer_id
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE (COALESCE(cf."historical_clv" >= (SELECT MIN(v) FROM (SELECT "historical_clv" AS v FROM customer_facts WHERE "historical_clv" IS NOT NULL ORDER BY "historical_clv" DESC LIMIT (SELECT CAST(FLOOR((COUNT(*) * 3 + 9) * 1.0 / 10) AS BIGINT) FROM customer_facts WHERE "historical_clv" IS NOT NULL)) AS ranked), FALSE) AND COALESCE(cf."orders_count" >= 2, FALSE) AND COALESCE(cf."p_alive" < 0.5, FALSE))
ORDER BY cf.customer_id
