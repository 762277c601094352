-- Every SQL statement of the worker, as named blocks ("-- name: <name>"), loaded once by
-- worker/storage/queries.py. Values are always parameters ($1, $2 ...), never built into text.

-- name: claim_command
-- Claim a command id for this transaction. Returns nothing when the id is already taken
-- (by a committed command, or by one in flight: the insert then waits for it to finish).
INSERT INTO processed_commands (command_id, command, payload_hash)
VALUES ($1, $2, $3)
ON CONFLICT (command_id) DO NOTHING
RETURNING command_id;

-- name: claim_commands
-- Claim the command ids of a batch at once; returns the ids claimed now. Sorted, so that two
-- workers claiming overlapping batches (after a rebalance) take the locks in the same order.
INSERT INTO processed_commands (command_id, command, payload_hash)
SELECT c.command_id, c.command, c.payload_hash
FROM unnest($1::text[], $2::text[], $3::bytea[]) AS c (command_id, command, payload_hash)
ORDER BY c.command_id
ON CONFLICT (command_id) DO NOTHING
RETURNING command_id;

-- name: save_results
UPDATE processed_commands p
SET result = r.result
FROM unnest($1::text[], $2::bytea[]) AS r (command_id, result)
WHERE p.command_id = r.command_id;

-- name: stored_result
SELECT command, payload_hash, result FROM processed_commands WHERE command_id = $1;

-- name: save_result
UPDATE processed_commands SET result = $2 WHERE command_id = $1;

-- name: insert_numbers
-- Insert a load's numbers in the given order; numbers already stored are left alone.
INSERT INTO unique_numbers (unique_number, variant_id, number_type, loaded_by_command)
SELECT n.unique_number, n.variant_id, n.number_type, $4
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
     AS n (unique_number, variant_id, number_type, ord)
ORDER BY n.ord
ON CONFLICT (unique_number) DO NOTHING;

-- name: conflicting_numbers
-- Numbers of a load that are stored under another variant or type (checked after the insert,
-- so that a concurrent load of the same number is seen once it commits).
SELECT n.ord::int AS ord, u.variant_id, u.number_type
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
     AS n (unique_number, variant_id, number_type, ord)
JOIN unique_numbers u ON u.unique_number = n.unique_number
WHERE u.variant_id <> n.variant_id OR u.number_type <> n.number_type
ORDER BY n.ord
LIMIT $4;

-- name: reserve_number
-- Take the oldest free number of a variant and type. SKIP LOCKED lets any number of workers
-- reserve at once: each locks a different row, and none waits for another.
WITH picked AS (
    SELECT id FROM unique_numbers
    WHERE variant_id = $1 AND number_type = $2
      AND NOT is_reserved AND NOT is_used AND NOT disabled
    ORDER BY id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE unique_numbers u
SET is_reserved = true,
    reserved_by_command = $3,
    reserved_at = now(),
    purchase_order = $4,
    physical_set = $5
FROM picked
WHERE u.id = picked.id
RETURNING u.unique_number;

-- name: reserve_numbers
-- reserve_number for many commands at once ($1..$5: one entry per command, in order): the
-- k-th command of a variant and type gets the k-th oldest free number that no other
-- transaction holds, exactly as the commands one after the other would. Returns the position
-- (1-based) and number of each command served; a command left out found no free number.
WITH wanted AS MATERIALIZED (
    SELECT w.ord, w.variant_id, w.number_type, w.command_id, w.purchase_order, w.physical_set,
           row_number() OVER (PARTITION BY w.variant_id, w.number_type ORDER BY w.ord) AS rank
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY
         AS w (variant_id, number_type, command_id, purchase_order, physical_set, ord)
),
picked AS MATERIALIZED (
    SELECT g.variant_id, g.number_type, f.id,
           row_number() OVER (PARTITION BY g.variant_id, g.number_type ORDER BY f.id) AS rank
    FROM (SELECT variant_id, number_type, count(*) AS n FROM wanted GROUP BY 1, 2) AS g
    CROSS JOIN LATERAL (
        SELECT u.id FROM unique_numbers u
        WHERE u.variant_id = g.variant_id AND u.number_type = g.number_type
          AND NOT u.is_reserved AND NOT u.is_used AND NOT u.disabled
        ORDER BY u.id
        LIMIT g.n
        FOR UPDATE SKIP LOCKED
    ) AS f
)
UPDATE unique_numbers u
SET is_reserved = true,
    reserved_by_command = w.command_id,
    reserved_at = now(),
    purchase_order = w.purchase_order,
    physical_set = w.physical_set
FROM picked p
JOIN wanted w
  ON w.variant_id = p.variant_id AND w.number_type = p.number_type AND w.rank = p.rank
WHERE u.id = p.id
RETURNING w.ord::int AS ord, u.unique_number;

-- name: number_for_update
SELECT variant_id, number_type, is_used FROM unique_numbers WHERE unique_number = $1 FOR UPDATE;

-- name: mark_used
UPDATE unique_numbers
SET is_used = true, used_by_command = $2, used_at = now()
WHERE unique_number = $1;

-- name: list_numbers
-- One page of a variant's numbers in load order. The rows before the page are skipped in an
-- index-only scan of the variant's ids (no row read), and only the page's rows are read:
-- with OFFSET on the rows themselves, the planner walked the primary key and read (and
-- filtered out) every row of the other variants on the way, ten times slower at a depth of
-- 1,000,000. No row at the offset: no page.
SELECT id, unique_number, number_type, is_reserved, is_used, disabled, purchase_order,
       physical_set
FROM unique_numbers
WHERE variant_id = $1
  AND id >= (SELECT s.id FROM unique_numbers s
             WHERE s.variant_id = $1
             ORDER BY s.id
             OFFSET $3 LIMIT 1)
ORDER BY id
LIMIT $2;

-- name: list_numbers_by_used
-- The same, only used ($2 true) or only unused ($2 false) numbers.
SELECT id, unique_number, number_type, is_reserved, is_used, disabled, purchase_order,
       physical_set
FROM unique_numbers
WHERE variant_id = $1 AND is_used = $2
  AND id >= (SELECT s.id FROM unique_numbers s
             WHERE s.variant_id = $1 AND s.is_used = $2
             ORDER BY s.id
             OFFSET $4 LIMIT 1)
ORDER BY id
LIMIT $3;

-- name: list_numbers_after
-- The page after the number with id $2 (keyset cursor): as fast at any depth as on page 0.
SELECT id, unique_number, number_type, is_reserved, is_used, disabled, purchase_order,
       physical_set
FROM unique_numbers
WHERE variant_id = $1 AND id > $2
ORDER BY id
LIMIT $3;

-- name: list_numbers_by_used_after
SELECT id, unique_number, number_type, is_reserved, is_used, disabled, purchase_order,
       physical_set
FROM unique_numbers
WHERE variant_id = $1 AND is_used = $2 AND id > $3
ORDER BY id
LIMIT $4;
