-- Signals published after the last one this node has read, oldest first.
SELECT id, payload FROM underway_signals WHERE id > :after ORDER BY id
