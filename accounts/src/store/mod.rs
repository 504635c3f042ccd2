//! accounts' persistence: diesel models and the transactions of each use case.

pub mod card_keys;
pub mod cards;
pub mod ledger;
pub mod schema;

use crate::domain::account::NewAccount;
use crate::events;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use schema::accounts;
use shared_kernel::ids::AccountId;
use shared_kernel::outbox;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = accounts)]
pub struct AccountRow {
    pub id: Uuid,
    pub legal_name: String,
    pub currency: String,
    pub credit_limit: i64,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub program_id: String,
}

#[derive(Insertable)]
#[diesel(table_name = accounts)]
struct NewAccountRow<'a> {
    id: Uuid,
    legal_name: &'a str,
    currency: &'a str,
    credit_limit: i64,
    program_id: &'a str,
}

/// An account with its posted balance (the sum of its receivable ledger lines).
#[derive(Debug, Clone)]
pub struct AccountWithBalance {
    pub account: AccountRow,
    pub posted_balance: i64,
}

/// Opens the account and records `account_opened` in the outbox, in one transaction.
pub fn open_account(conn: &mut PgConnection, new: &NewAccount) -> QueryResult<AccountWithBalance> {
    conn.transaction(|conn| {
        let id = AccountId::new().0;
        let row: AccountRow = diesel::insert_into(accounts::table)
            .values(NewAccountRow {
                id,
                legal_name: &new.legal_name,
                currency: new.currency.code(),
                credit_limit: new.credit_limit.amount,
                program_id: &new.program_id,
            })
            .returning(AccountRow::as_returning())
            .get_result(conn)?;
        outbox::enqueue(
            conn,
            &events::account_snapshot(events::ACCOUNT_OPENED, &row, 0, None),
        )?;
        Ok(AccountWithBalance {
            account: row,
            posted_balance: 0,
        })
    })
}

/// The program of the account, if it exists (no balance computed).
pub fn account_program(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<String>> {
    accounts::table
        .find(id)
        .select(accounts::program_id)
        .first(conn)
        .optional()
}

pub fn find_account(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<AccountWithBalance>> {
    let Some(account) = accounts::table
        .find(id)
        .select(AccountRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let posted_balance = ledger::posted_balance(conn, id)?;
    Ok(Some(AccountWithBalance {
        account,
        posted_balance,
    }))
}
