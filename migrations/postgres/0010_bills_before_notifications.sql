-- A build writes every due bill with its flags first and the notifications after, in a pass
-- of their own over the bills that have none. What that pass renders must come from the bill:
-- the VAS services it lists are kept with it, as a JSON array of
-- [service_code, name, amount_fen, charges], NULL when there are none.
ALTER TABLE bills ADD COLUMN vas_lines TEXT COLLATE "C";
-- When a run had written its last bill; its notifications follow until `finished_at`.
ALTER TABLE billing_runs ADD COLUMN billed_at BIGINT;
