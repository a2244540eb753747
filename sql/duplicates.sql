-- Rows that share the primary key (exchange, symbol, trade_id). Expected: none.
--   schemahub query --file sql/duplicates.sql
SELECT exchange, symbol, trade_id, count(*) AS copies
FROM trades
GROUP BY exchange, symbol, trade_id
HAVING count(*) > 1
ORDER BY copies DESC, exchange, symbol, trade_id;
