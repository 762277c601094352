-- Unique numbers of product variants, and the commands already applied (idempotency).

CREATE TABLE unique_numbers (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- load order
    -- "C" collation: compared and indexed byte for byte, as the codes are.
    unique_number       text COLLATE "C" NOT NULL,
    variant_id          text COLLATE "C" NOT NULL,
    number_type         text NOT NULL,
    is_reserved         boolean NOT NULL DEFAULT false,
    is_used             boolean NOT NULL DEFAULT false,
    disabled            boolean NOT NULL DEFAULT false,
    purchase_order      text NOT NULL DEFAULT '',
    physical_set        text NOT NULL DEFAULT '',
    loaded_by_command   text NOT NULL,
    reserved_by_command text,
    used_by_command     text,
    loaded_at           timestamptz NOT NULL DEFAULT now(),
    reserved_at         timestamptz,
    used_at             timestamptz,
    CONSTRAINT unique_numbers_number_key UNIQUE (unique_number)
);

-- Reservation: the oldest free number of a variant and type, found without a scan.
CREATE INDEX unique_numbers_free_idx
    ON unique_numbers (variant_id, number_type, id)
    WHERE NOT is_reserved AND NOT is_used AND NOT disabled;

-- Listing one variant in load order, optionally by used flag.
CREATE INDEX unique_numbers_variant_idx ON unique_numbers (variant_id, id);
CREATE INDEX unique_numbers_variant_used_idx ON unique_numbers (variant_id, is_used, id);

CREATE TABLE processed_commands (
    command_id   text COLLATE "C" PRIMARY KEY,
    command      text NOT NULL,
    payload_hash bytea NOT NULL,
    -- The exact result body published, republished as is when the command comes again.
    result       bytea,
    processed_at timestamptz NOT NULL DEFAULT now()
);
