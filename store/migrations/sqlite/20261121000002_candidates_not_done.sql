-- Candidates not done yet (not submitted, expelled or absent). Small once an
-- exam is over: the keeper's query for ended plans that still have sitting
-- candidates (a room missed the end) reads it every few seconds.
CREATE INDEX candidates_not_done ON candidates (plan_id)
    WHERE state IN ('registered', 'checked_in', 'testing', 'paused');
