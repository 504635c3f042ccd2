use super::schema::{accounts, cards};
use crate::events;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};
use shared_kernel::outbox;
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

/// Stores the card and records `card_issued` in the outbox, in one transaction.
pub fn issue_card(conn: &mut PgConnection, card: &CardRow) -> Result<(), IssueError> {
    conn.transaction(|conn| {
        let status: Option<String> = accounts::table
            .find(card.account_id)
            .select(accounts::status)
            .for_share()
            .first(conn)
            .optional()?;
        match status.as_deref() {
            None => return Err(IssueError::AccountNotFound),
            Some("active") => {}
            Some(other) => return Err(IssueError::AccountNotActive(other.to_owned())),
        }
        diesel::insert_into(cards::table)
            .values(card)
            .execute(conn)
            .map_err(|e| match e {
                Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                    IssueError::DuplicatePan
                }
                other => IssueError::Db(other),
            })?;
        outbox::enqueue(conn, &events::card_issued(card))?;
        Ok(())
    })
}

/// The stored card with this id.
pub fn find_card(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<CardRow>> {
    cards::table
        .find(id)
        .select(CardRow::as_select())
        .first(conn)
        .optional()
}
