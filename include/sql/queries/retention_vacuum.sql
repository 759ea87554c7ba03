-- After `python -m komoju db clean --yes`: mark the deleted rows' space free for new rows and refresh the planner's
-- statistics. A plain VACUUM never blocks the jobs' reads and writes (VACUUM FULL, which would return the space to
-- the operating system, locks the tables: it is left to the operator). Outside a transaction block (autocommit).
VACUUM (ANALYZE) komoju.attempt, komoju.final_failure, komoju.customer_link, komoju.notification
