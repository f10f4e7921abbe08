-- Signals published since :since (epoch seconds), oldest first; every row also carries the
-- server's clock (one row with a NULL id when there is no signal).
SELECT s.id, s.payload::text, date_part('epoch', s.published_at), date_part('epoch', c.clock)
  FROM (SELECT statement_timestamp() AS clock) AS c
  LEFT JOIN {schema}.underway_signals AS s ON s.published_at >= to_timestamp(%(since)s)
 ORDER BY s.id
