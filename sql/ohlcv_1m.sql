-- 1-minute OHLCV bars with VWAP for one product on one UTC day.
--   schemahub query --file sql/ohlcv_1m.sql --param symbol=BTC-USD --param day=2026-11-26
-- Minutes are integer math on epoch_us(trade_ts) (no ICU calendar functions), and the
-- trade_date filter prunes to one partition per exchange.
SELECT
    make_timestamp(minute * 60000000) AS minute_utc,
    exchange,
    arg_min(price, trade_ts)          AS open,
    max(price)                        AS high,
    min(price)                        AS low,
    arg_max(price, trade_ts)          AS close,
    round(sum(quantity), 8)           AS volume,
    round(sum(price * quantity) / sum(quantity), 6) AS vwap,
    count(*)                          AS trades,
    round(sum(CASE WHEN side = 'buy' THEN quantity ELSE 0 END), 8) AS taker_buy_volume
FROM (
    SELECT exchange, epoch_us(trade_ts) // 60000000 AS minute, price, quantity, side, trade_ts
    FROM trades
    WHERE symbol = $symbol AND trade_date = CAST($day AS DATE)
)
GROUP BY minute, exchange
ORDER BY minute, exchange;
