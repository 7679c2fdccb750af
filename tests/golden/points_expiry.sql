WITH order_facts AS (
    SELECT customer_id,
           COUNT(*) AS orders_count,
           SUM(total) AS total_spent,
           AVG(total) AS avg_order_value,
           MIN(placed_at) AS first_order_at,
           MAX(placed_at) AS last_order_at
    FROM orders
    WHERE placed_at <= TIMESTAMP '2026-11-23 12:00:00'
    GROUP BY customer_id
  ),
  scored AS (
    SELECT *,
           CAST(LEAST(5, 1 + FLOOR(5 * PERCENT_RANK() OVER (ORDER BY last_order_at))) AS INTEGER) AS r,
           CAST(LEAST(5, 1 + FLOOR(5 * PERCENT_RANK() OVER (ORDER BY orders_count))) AS INTEGER) AS f,
           CAST(LEAST(5, 1 + FLOOR(5 * PERCENT_RANK() OVER (ORDER BY total_spent))) AS INTEGER) AS m
    FROM order_facts
  ),
  customer_facts AS (
    SELECT c."customer_id",
           c."email",
           c."first_name",
           c."last_name",
           c."locale",
           c."timezone",
           c."accepts_marketing",
           c."created_at",
           c."role",
           c."wedding_date",
           c."loyalty_points",
           c."points_expire_at",
           COALESCE(s.orders_count, 0) AS orders_count,
           COALESCE(s.total_spent, 0) AS total_spent,
           s.avg_order_value,
           s.first_order_at,
           s.last_order_at,
           DATE '2026-11-23' - CAST(s.first_order_at AS DATE) AS days_since_first_order,
           DATE '2026-11-23' - CAST(s.last_order_at AS DATE) AS days_since_last_order,
           s.r AS rfm_recency,
           s.f AS rfm_frequency,
           s.m AS rfm_monetary,
           CASE
        WHEN s.r >= 4 AND s.f >= 4 THEN 'champions'
        WHEN s.r >= 3 AND s.f >= 3 THEN 'loyal'
        WHEN s.r >= 4 AND s.f = 1 THEN 'new'
        WHEN s.r >= 3 THEN 'potential_loyalists'
        WHEN s.f >= 4 THEN 'cant_lose'
        WHEN s.f = 3 THEN 'at_risk'
        WHEN s.r = 2 THEN 'hibernating'
        WHEN s.r = 1 THEN 'lost'
      END AS rfm_segment,
           COALESCE(s.total_spent, 0) AS historical_clv
    FROM customers AS c
    LEFT JOIN scored AS s ON s.customer_id = c.customer_id
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE (COALESCE(cf."loyalty_points" >= 100, FALSE) AND COALESCE(cf."points_expire_at" BETWEEN DATE '2026-11-23' AND DATE '2026-12-23', FALSE))
ORDER BY cf.customer_id
