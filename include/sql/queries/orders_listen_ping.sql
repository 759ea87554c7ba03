-- The asset watcher's round trip on its listening connection after a quiet minute: a connection that cannot answer
-- (a server gone without a word, a network cut) is closed and opened again.
SELECT 1
