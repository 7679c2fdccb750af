WITH customer_facts AS (
    SELECT c."customer_id",
           pr.p_alive AS p_alive,
           pr.predicted_clv AS predicted_clv
    FROM customers AS c
    LEFT JOIN "clvflow_predictions_20261123_365" AS pr ON pr.customer_id = c.customer_id
  )
SELECT cf.customer_id
FROM customer_facts AS cf
WHERE (COALESCE(cf."predicted_clv" >= (SELECT MIN(v) FROM (SELECT "predicted_clv" AS v FROM customer_facts WHERE "predicted_clv" IS NOT NULL ORDER BY "predicted_clv" DESC LIMIT (SELECT CAST(FLOOR((COUNT(*) * 1 + 19) * 1.0 / 20) AS BIGINT) FROM customer_facts WHERE "predicted_clv" IS NOT NULL)) AS ranked), FALSE) AND COALESCE(cf."p_alive" >= 0.5, FALSE))
ORDER BY cf.customer_id
