-- Which write moved an organisation's spend revision last, and which the
-- one before: tokens the writes chose (NULL for writes that patch no
-- projection). A pull patches its instance's spend projection in its
-- transaction and stages it; a reader takes the staged projection only
-- when the revision it reads carries that pull's token, and the next pull
-- patches it only when its revision's previous writer is that pull, so a
-- pull whose commit failed is never taken for another write that reached
-- the same number.
ALTER TABLE spend_revisions ADD COLUMN writer BIGINT;
ALTER TABLE spend_revisions ADD COLUMN previous_writer BIGINT;
