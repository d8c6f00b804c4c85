-- Reported numbers in the form contract version 2 compares them in: a leading 00 becomes +,
-- and 86 with an 11-digit mainland mobile becomes +86 with it (docs/contract.md §4).
UPDATE spam_reports SET reported_number = '+' || substr(reported_number, 3)
WHERE reported_number LIKE '00%' AND length(reported_number) > 2;

UPDATE spam_reports SET reported_number = '+' || reported_number
WHERE length(reported_number) = 13 AND reported_number LIKE '861%'
  AND substr(reported_number, 4, 1) BETWEEN '3' AND '9';
