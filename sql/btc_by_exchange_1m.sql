-- BTC on every exchange, minute by minute: VWAP, volume and how far each exchange's VWAP is
-- from the cross-exchange mean, over the last $minutes minutes before the newest BTC trade.
--   schemahub query --file sql/btc_by_exchange_1m.sql --param minutes=10
-- BTC-USD and BTC-USDT are both included and told apart by `symbol`: USDT is not USD, so
-- the gap between them is partly the USDT/USD rate, not a price difference.
WITH btc AS (
    SELECT exchange, symbol, epoch_us(trade_ts) // 60000000 AS minute, price, quantity
    FROM trades
    WHERE symbol IN ('BTC-USD', 'BTC-USDT')
),
per_minute AS (
    SELECT minute, exchange, symbol,
           sum(price * quantity) / sum(quantity) AS vwap,
           sum(quantity)                         AS volume_btc,
           count(*)                              AS trades
    FROM btc
    WHERE minute > (SELECT max(minute) FROM btc) - CAST($minutes AS INTEGER)
    GROUP BY ALL
)
SELECT make_timestamp(minute * 60000000)                        AS minute_utc,
       exchange,
       symbol,
       round(vwap, 2)                                           AS vwap,
       round(vwap - avg(vwap) OVER (PARTITION BY minute), 2)    AS vs_mean,
       round(volume_btc, 6)                                     AS volume_btc,
       trades
FROM per_minute
ORDER BY minute_utc DESC, exchange, symbol;
