"""The aggregates of one (exchange, symbol, UTC day) of the trades table, in one statement.

Certificates store them (``quality/certificates.py``) and exports compare them
(``query/export.py``): count, id span, volume, VWAP, the longest silence, and a content hash
- md5 over the day's rows in canonical order (by trade id; every column that is data,
numbers as ``%.17g``, times as epoch µs) - so a day can be re-verified bit for bit after
compaction, a migration, or a copy into another engine.
"""

DAY_STATS_SQL = """
WITH rows AS (
    SELECT *, epoch_us(trade_ts) - lag(epoch_us(trade_ts)) OVER (
        PARTITION BY exchange, symbol, trade_date ORDER BY trade_ts, TRY_CAST(trade_id AS BIGINT)) AS gap_us
    FROM trades WHERE exchange = $exchange AND trade_date IN (SELECT unnest($days::DATE[])))
SELECT exchange, symbol, trade_date AS day, count(*) AS trades,
       min(TRY_CAST(trade_id AS BIGINT)) AS first_id, max(TRY_CAST(trade_id AS BIGINT)) AS last_id,
       bool_or(id_kind = 'derived') AS derived, sum(quantity) AS volume,
       sum(price * quantity) / nullif(sum(quantity), 0) AS vwap,
       coalesce(max(gap_us), 0) / 1e6 AS longest_silence_s,
       md5(string_agg(concat_ws('|', trade_id, id_kind, side, printf('%.17g', price),
                                printf('%.17g', quantity), epoch_us(trade_ts)::VARCHAR),
                      chr(10) ORDER BY TRY_CAST(trade_id AS BIGINT), trade_id)) AS content_hash
FROM rows GROUP BY ALL ORDER BY ALL
"""
