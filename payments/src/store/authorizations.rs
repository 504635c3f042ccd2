//! Authorizations and captures: each create is one transaction holding the state
//! change, the hold, the outbox event and the idempotency record.

use super::idempotency::{self, IdempotencyKey, Stored};
use super::schema::{
    account_projection as ap, authorizations as au, captures as ca, card_projection as cp,
};
use crate::domain::authorization::{decide, SpendPosition};
use crate::domain::merchant::Merchant;
use crate::events;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use shared_kernel::ids::{AuthorizationId, CaptureId};
use shared_kernel::{outbox, program, Currency, Money, Problem};
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = au)]
pub struct AuthorizationRow {
    pub id: Uuid,
    pub card_id: Uuid,
    pub account_id: Uuid,
    pub status: String,
    pub decline_code: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub captured_amount: i64,
    pub merchant: serde_json::Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub program_id: String,
}

#[derive(Debug, Serialize)]
pub struct AuthorizationOut {
    pub id: Uuid,
    pub card_id: Uuid,
    pub account_id: Uuid,
    pub status: String,
    pub decline_code: Option<String>,
    pub amount: Money,
    pub captured_amount: Money,
    pub merchant: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

fn currency(code: &str) -> Result<Currency, Problem> {
    Currency::parse(code).map_err(|_| Problem::internal())
}

pub fn authorization_out(r: AuthorizationRow) -> Result<AuthorizationOut, Problem> {
    let c = currency(&r.currency)?;
    Ok(AuthorizationOut {
        id: r.id,
        card_id: r.card_id,
        account_id: r.account_id,
        status: r.status,
        decline_code: r.decline_code,
        amount: Money::new(r.amount, c),
        captured_amount: Money::new(r.captured_amount, c),
        merchant: r.merchant,
        created_at: r.created_at,
    })
}

fn json(v: &impl Serialize) -> Result<serde_json::Value, Problem> {
    serde_json::to_value(v).map_err(|_| Problem::internal())
}

#[derive(Debug, Clone)]
pub struct AuthorizeCommand {
    /// The program the caller is bound to (`None`: a platform caller).
    pub bound: Option<String>,
    pub card_id: Uuid,
    pub amount: Money,
    pub merchant: Merchant,
}

/// Decides an authorization against the projection. The account's projection row is
/// locked for the decision, so concurrent authorizations cannot overspend.
pub fn authorize(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    cmd: &AuthorizeCommand,
) -> Result<Stored, Problem> {
    conn.transaction(|conn| {
        if let Some(stored) = idempotency::begin(conn, key)? {
            return Ok(stored);
        }
        // Another program's card is answered as an unknown one (ADR 0018).
        let (account_id, card_status, program_id) = cp::table
            .find(cmd.card_id)
            .select((cp::account_id, cp::status, cp::program_id))
            .first::<(Uuid, String, String)>(conn)
            .optional()?
            .filter(|(_, _, p)| program::visible(cmd.bound.as_deref(), p))
            .ok_or_else(|| Problem::not_found("card"))?;
        let (acc_currency, limit, posted, status, held): (String, i64, i64, String, i64) =
            ap::table
                .find(account_id)
                .select((
                    ap::currency,
                    ap::credit_limit,
                    ap::posted_balance,
                    ap::status,
                    ap::held,
                ))
                .for_update()
                .first(conn)
                .optional()?
                .ok_or_else(|| Problem::not_found("card"))?;
        if cmd.amount.currency.code() != acc_currency {
            return Err(Problem::field(
                "/amount/currency",
                format!("must be the account's currency ({acc_currency})"),
            ));
        }
        let position = SpendPosition {
            credit_limit: limit,
            posted_balance: posted,
            held,
        };
        let decision = decide(
            card_status == "active",
            status == "active",
            position,
            cmd.amount.amount,
        );
        let row = AuthorizationRow {
            id: AuthorizationId::new().0,
            card_id: cmd.card_id,
            account_id,
            status: if decision.is_ok() {
                "approved"
            } else {
                "declined"
            }
            .to_owned(),
            decline_code: decision.err().map(|d| d.as_str().to_owned()),
            amount: cmd.amount.amount,
            currency: acc_currency,
            captured_amount: 0,
            merchant: json(&cmd.merchant)?,
            version: 1,
            created_at: now_micros(),
            program_id,
        };
        diesel::insert_into(au::table)
            .values((
                au::id.eq(row.id),
                au::card_id.eq(row.card_id),
                au::account_id.eq(row.account_id),
                au::status.eq(&row.status),
                au::decline_code.eq(&row.decline_code),
                au::amount.eq(row.amount),
                au::currency.eq(&row.currency),
                au::merchant.eq(&row.merchant),
                au::created_at.eq(row.created_at),
                au::program_id.eq(&row.program_id),
            ))
            .execute(conn)?;
        if decision.is_ok() {
            diesel::update(ap::table.find(account_id))
                .set(ap::held.eq(ap::held + row.amount))
                .execute(conn)?;
        }
        metrics::counter!("authorization_decisions_total", "outcome" => row.status.clone(),
            "decline_code" => row.decline_code.clone().unwrap_or_else(|| "none".to_owned()))
        .increment(1);
        let body = json(&authorization_out(row)?)?;
        idempotency::finish(conn, key, 201, &body)?;
        Ok(Stored {
            status: 201,
            body,
            replayed: false,
        })
    })
}

#[derive(Debug, Serialize)]
pub struct CaptureOut {
    pub id: Uuid,
    pub authorization_id: Uuid,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
}

/// Captures part or all of what remains of an approved authorization, and records
/// `payment_captured` in the outbox.
pub fn capture(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    authorization_id: Uuid,
    amount: Money,
    bound: Option<&str>,
) -> Result<Stored, Problem> {
    conn.transaction(|conn| {
        if let Some(stored) = idempotency::begin(conn, key)? {
            return Ok(stored);
        }
        let auth: AuthorizationRow = au::table
            .find(authorization_id)
            .select(AuthorizationRow::as_select())
            .for_update()
            .first(conn)
            .optional()?
            .filter(|a| program::visible(bound, &a.program_id))
            .ok_or_else(|| Problem::not_found("authorization"))?;
        if auth.status != "approved" {
            return Err(Problem::conflict(format!(
                "the authorization is {}; only approved ones can be captured",
                auth.status
            )));
        }
        if amount.currency.code() != auth.currency {
            return Err(Problem::field(
                "/amount/currency",
                format!("must be the authorization's currency ({})", auth.currency),
            ));
        }
        let remaining = auth.amount - auth.captured_amount;
        if amount.amount > remaining {
            return Err(Problem::field(
                "/amount/amount",
                format!("exceeds what remains to capture ({remaining})"),
            ));
        }
        let version = auth.version + 1;
        diesel::update(au::table.find(auth.id))
            .set((
                au::captured_amount.eq(au::captured_amount + amount.amount),
                au::version.eq(version),
            ))
            .execute(conn)?;
        let out = CaptureOut {
            id: CaptureId::new().0,
            authorization_id: auth.id,
            amount,
            created_at: now_micros(),
        };
        diesel::insert_into(ca::table)
            .values((
                ca::id.eq(out.id),
                ca::authorization_id.eq(auth.id),
                ca::amount.eq(amount.amount),
                ca::currency.eq(amount.currency.code()),
                ca::created_at.eq(out.created_at),
            ))
            .execute(conn)?;
        outbox::enqueue(conn, &events::payment_captured(&auth, &out, version))?;
        let body = json(&out)?;
        idempotency::finish(conn, key, 201, &body)?;
        Ok(Stored {
            status: 201,
            body,
            replayed: false,
        })
    })
}

pub fn find(
    conn: &mut PgConnection,
    id: Uuid,
    bound: Option<&str>,
) -> Result<AuthorizationOut, Problem> {
    let row = au::table
        .find(id)
        .select(AuthorizationRow::as_select())
        .first(conn)
        .optional()?
        .filter(|a| program::visible(bound, &a.program_id))
        .ok_or_else(|| Problem::not_found("authorization"))?;
    authorization_out(row)
}

#[derive(Debug, Serialize)]
pub struct SpendOut {
    pub card_id: Uuid,
    pub account_id: Uuid,
    pub credit_limit: Money,
    pub available_credit: Money,
    pub open_holds: Money,
}

pub fn spend(
    conn: &mut PgConnection,
    card_id: Uuid,
    bound: Option<&str>,
) -> Result<SpendOut, Problem> {
    type Row = (Uuid, String, i64, i64, i64, String);
    let (account_id, acc_currency, limit, posted, held, _) = cp::table
        .inner_join(ap::table.on(ap::account_id.eq(cp::account_id)))
        .filter(cp::card_id.eq(card_id))
        .select((
            ap::account_id,
            ap::currency,
            ap::credit_limit,
            ap::posted_balance,
            ap::held,
            cp::program_id,
        ))
        .first::<Row>(conn)
        .optional()?
        .filter(|r: &Row| program::visible(bound, &r.5))
        .ok_or_else(|| Problem::not_found("card"))?;
    let c = currency(&acc_currency)?;
    let position = SpendPosition {
        credit_limit: limit,
        posted_balance: posted,
        held,
    };
    Ok(SpendOut {
        card_id,
        account_id,
        credit_limit: Money::new(limit, c),
        available_credit: Money::new(position.available(), c),
        open_holds: Money::new(held, c),
    })
}

/// Now, at the database's precision (microseconds), so a stored response and a later
/// read of the same row agree.
fn now_micros() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}
