-- Record that the job checked these sites in this DAG run, and whether each had work: one row per site and job,
-- replaced at each check. %(checks)s is a JSON array of {site_id, had_work}.
INSERT INTO komoju.site_check AS c (site_id, job, checked_at, had_work, run_id)
SELECT r.site_id, %(job)s, now(), r.had_work, %(run_id)s
FROM jsonb_to_recordset(%(checks)s::jsonb) AS r (site_id text, had_work boolean)
ON CONFLICT (site_id, job) DO UPDATE
SET checked_at = excluded.checked_at, had_work = excluded.had_work, run_id = excluded.run_id
