-- Per product: the newest trade, when it was fetched, and how far behind now it is.
--   schemahub query --file sql/freshness.sql
SELECT
    exchange,
    symbol,
    max(trade_ts)                                       AS newest_trade,
    max(ingest_ts)                                      AS newest_fetch,
    round((epoch_us(now()) - max(epoch_us(trade_ts))) / 1e6, 1) AS lag_seconds,
    count(*)                                            AS trades
FROM trades
GROUP BY exchange, symbol
ORDER BY lag_seconds DESC;
