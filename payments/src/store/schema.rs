// Tables of the `payments` schema (the pool's search_path selects the schema).

diesel::table! {
    account_projection (account_id) {
        account_id -> Uuid,
        currency -> Text,
        credit_limit -> Int8,
        posted_balance -> Int8,
        status -> Text,
        version -> Int8,
        held -> Int8,
    }
}

diesel::table! {
    card_projection (card_id) {
        card_id -> Uuid,
        account_id -> Uuid,
        status -> Text,
        version -> Int8,
        program_id -> Text,
    }
}

diesel::table! {
    authorizations (id) {
        id -> Uuid,
        card_id -> Uuid,
        account_id -> Uuid,
        status -> Text,
        decline_code -> Nullable<Text>,
        amount -> Int8,
        currency -> Text,
        captured_amount -> Int8,
        merchant -> Jsonb,
        version -> Int8,
        created_at -> Timestamptz,
        program_id -> Text,
    }
}

diesel::table! {
    captures (id) {
        id -> Uuid,
        authorization_id -> Uuid,
        amount -> Int8,
        currency -> Text,
        posted -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (subject, operation, key) {
        subject -> Text,
        operation -> Text,
        key -> Text,
        request_hash -> Text,
        status_code -> Int4,
        response -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    account_projection,
    card_projection,
    authorizations,
    captures
);
