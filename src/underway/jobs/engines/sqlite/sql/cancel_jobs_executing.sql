-- The executing jobs among those cancel_jobs is about to cancel (read in its transaction).
SELECT id FROM underway_jobs WHERE state = 'executing' AND {job_filter}
