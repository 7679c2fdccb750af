WITH customer_facts AS (
    SELECT c."customer_id",
           c."loyalty_points",
           c."points_expire_at"
    FROM customers AS c
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE (COALESCE(cf."loyalty_points" >= 100, FALSE) AND COALESCE(cf."points_expire_at" BETWEEN DATE '2026-11-23' AND DATE '2026-12-23', FALSE))
ORDER BY cf.customer_id
