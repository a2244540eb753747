-- Daily volume and notional per exchange and product, grouped on the stored trade_date.
--   schemahub query --file sql/daily_volume.sql
SELECT trade_date, exchange, symbol,
       count(*)              AS trades,
       sum(quantity)         AS volume,
       sum(price * quantity) AS notional,
       sum(price * quantity) / sum(quantity) AS vwap
FROM trades
GROUP BY trade_date, exchange, symbol
ORDER BY trade_date, exchange, symbol;
