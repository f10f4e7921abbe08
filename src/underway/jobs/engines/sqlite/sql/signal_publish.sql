-- Publish one control signal to every node.
INSERT INTO underway_signals (at, payload) VALUES (:at, :payload)
