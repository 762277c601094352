-- Every SQL statement of the worker, as named blocks ("-- name: <name>"), loaded once by
-- worker/storage/queries.py. Values are always parameters ($1, $2 ...), never built into text.

-- name: claim_command
-- Claim a command id for this transaction. Returns nothing when the id is already taken
-- (by a committed command, or by one in flight: the insert then waits for it to finish).
INSERT INTO processed_commands (command_id, command, payload_hash)
VALUES ($1, $2, $3)
ON CONFLICT (command_id) DO NOTHING
RETURNING command_id;

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

-- name: number_for_update
SELECT variant_id, number_type, is_used FROM unique_numbers WHERE unique_number = $1 FOR UPDATE;

-- name: mark_used
UPDATE unique_numbers
SET is_used = true, used_by_command = $2, used_at = now()
WHERE unique_number = $1;

-- name: list_numbers
-- One page of a variant's numbers in load order.
SELECT unique_number, number_type, is_reserved, is_used, disabled, purchase_order, physical_set
FROM unique_numbers
WHERE variant_id = $1
ORDER BY id
LIMIT $2 OFFSET $3;

-- name: list_numbers_by_used
-- The same, only used ($2 true) or only unused ($2 false) numbers.
SELECT unique_number, number_type, is_reserved, is_used, disabled, purchase_order, physical_set
FROM unique_numbers
WHERE variant_id = $1 AND is_used = $2
ORDER BY id
LIMIT $3 OFFSET $4;
