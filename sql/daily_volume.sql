-- Daily volume and notional per exchange and product, grouped on the stored trade_date.
-- Sums of doubles are rounded (8 decimals of volume, cents of notional): no binary noise.
--   schemahub query --file sql/daily_volume.sql
SELECT trade_date, exchange, symbol,
       count(*)                                        AS trades,
       round(sum(quantity), 8)                         AS volume,
       round(sum(price * quantity), 2)                 AS notional,
       round(sum(price * quantity) / sum(quantity), 6) AS vwap
FROM trades
GROUP BY trade_date, exchange, symbol
ORDER BY trade_date, exchange, symbol;
