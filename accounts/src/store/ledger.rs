use super::schema::{accounts, ledger_entries};
use super::AccountRow;
use crate::domain::ledger::{self, CARD_RECEIVABLE};
use crate::events::{self, PaymentSettled};
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use shared_kernel::{inbox, outbox, Currency, Money};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ledger_entries)]
pub struct EntryRow {
    pub id: i64,
    pub journal_id: Uuid,
    pub account_id: Uuid,
    pub ledger_account: String,
    pub direction: String,
    pub amount: i64,
    pub currency: String,
    pub payment_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Debits minus credits on the account's card receivable.
pub fn posted_balance(conn: &mut PgConnection, account_id: Uuid) -> QueryResult<i64> {
    ledger_entries::table
        .filter(ledger_entries::account_id.eq(account_id))
        .filter(ledger_entries::ledger_account.eq(CARD_RECEIVABLE))
        .select(sql::<BigInt>(
            "COALESCE(SUM(CASE direction WHEN 'debit' THEN amount ELSE -amount END), 0)::bigint",
        ))
        .first(conn)
}

/// A page of the account's journal lines, oldest first; the cursor is the last id seen.
pub fn entries(
    conn: &mut PgConnection,
    account_id: Uuid,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<EntryRow>> {
    ledger_entries::table
        .filter(ledger_entries::account_id.eq(account_id))
        .filter(ledger_entries::id.gt(after))
        .order(ledger_entries::id.asc())
        .limit(limit)
        .select(EntryRow::as_select())
        .load(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("account {0} is unknown")]
    UnknownAccount(Uuid),
    #[error("the posting is invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// Posts a settled payment to the ledger exactly once (inbox + unique lines), bumps the
/// account's sequence and records `balance_posted`, all in one transaction.
/// Returns false when the event had already been applied.
pub fn post_settled_payment(
    conn: &mut PgConnection,
    event_id: Uuid,
    settled: &PaymentSettled,
) -> Result<bool, PostError> {
    conn.transaction(|conn| {
        if !inbox::claim(conn, event_id, events::PAYMENT_SETTLED)? {
            return Ok(false);
        }
        let account: AccountRow = accounts::table
            .find(settled.account_id)
            .select(AccountRow::as_select())
            .for_update()
            .first(conn)
            .optional()?
            .ok_or(PostError::UnknownAccount(settled.account_id))?;
        let currency = Currency::parse(&settled.amount.currency)
            .map_err(|e| PostError::Invalid(e.to_string()))?;
        if currency.code() != account.currency {
            return Err(PostError::Invalid(
                "currency differs from the account's".to_owned(),
            ));
        }
        let amount = Money::positive(settled.amount.amount, currency)
            .map_err(|e| PostError::Invalid(e.to_string()))?;
        let lines = ledger::settled_payment(amount);
        if !ledger::is_balanced(&lines) {
            return Err(PostError::Invalid("unbalanced posting".to_owned()));
        }
        let journal_id = Uuid::now_v7();
        let mut inserted = 0;
        for line in &lines {
            inserted += diesel::insert_into(ledger_entries::table)
                .values((
                    ledger_entries::journal_id.eq(journal_id),
                    ledger_entries::account_id.eq(account.id),
                    ledger_entries::ledger_account.eq(line.ledger_account),
                    ledger_entries::direction.eq(line.direction.as_str()),
                    ledger_entries::amount.eq(line.amount.amount),
                    ledger_entries::currency.eq(line.amount.currency.code()),
                    ledger_entries::payment_id.eq(settled.capture_id),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?;
        }
        if inserted == 0 {
            // Already posted under another event id: nothing to do.
            return Ok(false);
        }
        let version: i64 = diesel::update(accounts::table.find(account.id))
            .set(accounts::version.eq(accounts::version + 1))
            .returning(accounts::version)
            .get_result(conn)?;
        let balance = posted_balance(conn, account.id)?;
        let row = AccountRow { version, ..account };
        let posted = events::Posted {
            payment_id: settled.capture_id,
            amount: settled.amount.clone(),
        };
        outbox::enqueue(
            conn,
            &events::account_snapshot(events::BALANCE_POSTED, &row, balance, Some(posted)),
        )?;
        Ok(true)
    })
}
