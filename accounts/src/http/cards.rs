use crate::card_keys::{FINGERPRINT_KEY, FINGERPRINT_KEY_VERSION, PAN_KEY};
use crate::domain::card::{check_expiry, parse_cardholder_name, Pan};
use crate::store::cards::{issue_card, CardRow, IssueError};
use crate::AppState;
use actix_web::{web, HttpResponse};
use chrono::Datelike;
use rand::Rng;
use serde::{Deserialize, Serialize};
use shared_kernel::auth::Caller;
use shared_kernel::db::{self, db_problem};
use shared_kernel::http::Body;
use shared_kernel::ids::CardId;
use shared_kernel::problem::Violations;
use shared_kernel::Problem;
use uuid::Uuid;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCard {
    cardholder_name: String,
    pan: Option<String>,
    expiry_month: i64,
    expiry_year: i64,
}

// No Debug: the body may hold a card number.

#[derive(Debug, Serialize)]
pub struct CardOut {
    id: Uuid,
    account_id: Uuid,
    cardholder_name: String,
    last4: String,
    expiry_month: i32,
    expiry_year: i32,
    status: String,
}

struct ParsedCard {
    name: String,
    pan: Pan,
    month: u32,
    year: i32,
}

fn parse(body: &IssueCard) -> Result<ParsedCard, Problem> {
    let mut v = Violations::new();
    let name = v.check(
        "/cardholder_name",
        parse_cardholder_name(&body.cardholder_name),
    );
    let pan = match &body.pan {
        Some(raw) => v.check("/pan", Pan::parse(raw)),
        None => Some(Pan::generate(|| rand::rng().random_range(0..10))),
    };
    let today = chrono::Utc::now();
    let expiry = match check_expiry(
        body.expiry_month,
        body.expiry_year,
        today.year(),
        today.month(),
    ) {
        Ok(e) => Some(e),
        Err(msg) => {
            let pointer = if msg.starts_with("expiry_month") {
                "/expiry_month"
            } else {
                "/expiry_year"
            };
            v.add(pointer, msg);
            None
        }
    };
    v.into_result()?;
    match (name, pan, expiry) {
        (Some(name), Some(pan), Some((month, year))) => Ok(ParsedCard {
            name,
            pan,
            month,
            year,
        }),
        _ => Err(Problem::internal()),
    }
}

pub async fn issue(
    caller: Caller,
    state: web::Data<AppState>,
    account_id: web::Path<Uuid>,
    body: Body<IssueCard>,
) -> Result<HttpResponse, Problem> {
    caller.require("cards:write")?;
    let account_id = account_id.into_inner();
    let card = parse(&body.0)?;
    drop(body);
    let transit = state.transit.as_ref().ok_or_else(|| {
        Problem::unavailable("card issuance needs Vault, which is not configured")
    })?;
    let vault_down = |e: anyhow::Error| {
        tracing::error!(error = %e, "Vault transit call failed");
        Problem::unavailable("card issuance is unavailable: the key service does not answer")
    };
    let ParsedCard {
        name,
        pan,
        month,
        year,
    } = card;
    let ciphertext = transit
        .encrypt(PAN_KEY, pan.expose().as_bytes())
        .await
        .map_err(vault_down)?;
    let fingerprint = transit
        .fingerprint(
            FINGERPRINT_KEY,
            FINGERPRINT_KEY_VERSION,
            pan.expose().as_bytes(),
        )
        .await
        .map_err(vault_down)?;
    let row = CardRow {
        id: CardId::new().0,
        account_id,
        cardholder_name: name,
        pan_ciphertext: ciphertext,
        pan_fingerprint: fingerprint,
        bin: pan.bin().to_owned(),
        last4: pan.last4().to_owned(),
        expiry_month: month as i32,
        expiry_year: year,
        status: "active".to_owned(),
    };
    drop(pan); // the plaintext number is not kept past this point
    let stored = row.clone();
    let bound = caller.program().map(str::to_owned);
    db::run_named(&state.pool, "issue_card", move |conn| {
        issue_card(conn, &stored, bound.as_deref()).map_err(|e| match e {
            IssueError::AccountNotFound => Problem::not_found("account"),
            IssueError::AccountNotActive(s) => Problem::conflict(format!("the account is {s}")),
            IssueError::DuplicatePan => Problem::conflict("a card with this number already exists"),
            IssueError::Db(e) => db_problem(e),
        })
    })
    .await?;
    tracing::info!(card_id = %row.id, account_id = %row.account_id, subject = %caller.subject, "card issued");
    Ok(HttpResponse::Created().json(CardOut {
        id: row.id,
        account_id: row.account_id,
        cardholder_name: row.cardholder_name,
        last4: row.last4,
        expiry_month: row.expiry_month,
        expiry_year: row.expiry_year,
        status: row.status,
    }))
}
