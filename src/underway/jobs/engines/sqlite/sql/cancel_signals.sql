-- A cancel signal for each job of :ids (a JSON array), published as signal_publish does.
INSERT INTO underway_signals (at, payload)
SELECT :now, json_object('action', 'cancel', 'job_id', value) FROM json_each(:ids)
