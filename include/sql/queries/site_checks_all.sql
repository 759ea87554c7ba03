-- The latest check of every site by each job (the KOMOJU page's "last checked ... nothing to do").
SELECT site_id, job, checked_at, had_work, run_id
FROM komoju.site_check
ORDER BY site_id, job
