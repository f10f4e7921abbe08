-- Keep a control signal a while (older ones are dropped) and notify every node.
WITH old AS (
    DELETE FROM {schema}.underway_signals
     WHERE published_at < statement_timestamp() - interval '10 minutes'
), added AS (
    INSERT INTO {schema}.underway_signals (payload) VALUES (%(payload)s::jsonb)
    RETURNING id
)
SELECT pg_notify({signal_channel}, id::text) FROM added
