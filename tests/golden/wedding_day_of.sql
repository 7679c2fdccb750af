WITH customer_facts AS (
    SELECT c."customer_id",
           c."role",
           c."wedding_date"
    FROM customers AS c
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE ((COALESCE(cf."role" IN ('couple', 'bridesmaid'), FALSE) AND COALESCE(cf."wedding_date" IS NOT NULL, FALSE)) AND COALESCE(cf."wedding_date" BETWEEN DATE '2026-11-23' AND DATE '2026-12-21', FALSE))
ORDER BY cf.customer_id
