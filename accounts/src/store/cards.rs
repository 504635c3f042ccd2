use super::schema::{accounts, cards};
use crate::events;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};
use shared_kernel::{outbox, program};
use uuid::Uuid;

/// What is stored of a card: never the PAN in the clear.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = cards)]
pub struct CardRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub cardholder_name: String,
    pub pan_ciphertext: String,
    pub pan_fingerprint: String,
    pub bin: String,
    pub last4: String,
    pub expiry_month: i32,
    pub expiry_year: i32,
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("account not found")]
    AccountNotFound,
    #[error("account is {0}")]
    AccountNotActive(String),
    #[error("a card with this number already exists")]
    DuplicatePan,
    #[error(transparent)]
    Db(#[from] Error),
}

/// Stores the card and records `card_issued` in the outbox, in one transaction. An
/// account of a program the caller (bound to `bound`) may not see is not found.
pub fn issue_card(
    conn: &mut PgConnection,
    card: &CardRow,
    bound: Option<&str>,
) -> Result<(), IssueError> {
    conn.transaction(|conn| {
        let account: Option<(String, String)> = accounts::table
            .find(card.account_id)
            .select((accounts::status, accounts::program_id))
            .for_share()
            .first(conn)
            .optional()?;
        let program_id = match account {
            Some((_, program)) if !program::visible(bound, &program) => {
                return Err(IssueError::AccountNotFound)
            }
            None => return Err(IssueError::AccountNotFound),
            Some((status, _)) if status != "active" => {
                return Err(IssueError::AccountNotActive(status))
            }
            Some((_, program)) => program,
        };
        diesel::insert_into(cards::table)
            .values(card)
            .execute(conn)
            .map_err(|e| match e {
                Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    IssueError::DuplicatePan
                }
                other => IssueError::Db(other),
            })?;
        outbox::enqueue(conn, &events::card_issued(card, &program_id))?;
        Ok(())
    })
}

/// The stored card with this id, unless its account's program is one the caller
/// (bound to `bound`) may not see.
pub fn find_card(
    conn: &mut PgConnection,
    id: Uuid,
    bound: Option<&str>,
) -> QueryResult<Option<CardRow>> {
    let found: Option<(CardRow, String)> = cards::table
        .inner_join(accounts::table)
        .filter(cards::id.eq(id))
        .select((CardRow::as_select(), accounts::program_id))
        .first(conn)
        .optional()?;
    Ok(found
        .filter(|(_, program)| program::visible(bound, program))
        .map(|(card, _)| card))
}
