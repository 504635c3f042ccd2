// Tables of the `accounts` schema (the pool's search_path selects the schema).

diesel::table! {
    accounts (id) {
        id -> Uuid,
        legal_name -> Text,
        currency -> Text,
        credit_limit -> Int8,
        status -> Text,
        version -> Int8,
        created_at -> Timestamptz,
        program_id -> Text,
    }
}

diesel::table! {
    cards (id) {
        id -> Uuid,
        account_id -> Uuid,
        cardholder_name -> Text,
        pan_ciphertext -> Text,
        pan_fingerprint -> Text,
        bin -> Text,
        last4 -> Text,
        expiry_month -> Int4,
        expiry_year -> Int4,
        status -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> Int8,
        journal_id -> Uuid,
        account_id -> Uuid,
        ledger_account -> Text,
        direction -> Text,
        amount -> Int8,
        currency -> Text,
        payment_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(cards -> accounts (account_id));
diesel::joinable!(ledger_entries -> accounts (account_id));
diesel::allow_tables_to_appear_in_same_query!(accounts, cards, ledger_entries);
