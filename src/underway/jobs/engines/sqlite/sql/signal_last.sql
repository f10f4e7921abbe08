-- The newest signal id: a node reads only what is published after it.
SELECT COALESCE(MAX(id), 0) FROM underway_signals
