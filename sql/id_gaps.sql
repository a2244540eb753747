-- Trade-id gaps per product (ids are dense per product on Coinbase, Binance and Kraken;
-- derived ids - Kraken rows that came without one - are positions, not a sequence).
-- A gap the exchange itself skipped is in the ingest gap log (state/gaps/...);
-- `schemahub check` separates those from unexplained ones.
--   schemahub query --file sql/id_gaps.sql
SELECT exchange, symbol, prev_id + 1 AS first_missing, id - 1 AS last_missing,
       id - prev_id - 1 AS missing_ids
FROM (
    SELECT exchange, symbol, id,
           lag(id) OVER (PARTITION BY exchange, symbol ORDER BY id) AS prev_id
    FROM (SELECT exchange, symbol, TRY_CAST(trade_id AS BIGINT) AS id FROM trades
          WHERE id_kind <> 'derived')
)
WHERE id > prev_id + 1
ORDER BY exchange, symbol, first_missing;
