-- The region a subscriber belongs to (a province code, say), which groups the regulator's
-- report (docs/contract.md §11); empty when not given.
ALTER TABLE subscribers ADD COLUMN region TEXT NOT NULL DEFAULT '';
