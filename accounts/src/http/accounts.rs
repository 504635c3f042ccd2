use crate::domain::account::{parse_legal_name, NewAccount};
use crate::store::{self, ledger, AccountWithBalance};
use crate::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use shared_kernel::auth::Caller;
use shared_kernel::db::{self, db_problem};
use shared_kernel::http::{page_limit, Body, MoneyIn, Page, PageQuery};
use shared_kernel::problem::Violations;
use shared_kernel::{program, Currency, Money, Problem};
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAccount {
    legal_name: String,
    currency: String,
    credit_limit: MoneyIn,
    program_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AccountOut {
    id: Uuid,
    legal_name: String,
    currency: String,
    status: String,
    credit_limit: Money,
    posted_balance: Money,
    program_id: String,
    created_at: chrono::DateTime<chrono::Utc>,
}

fn account_out(a: AccountWithBalance) -> Result<AccountOut, Problem> {
    let currency = Currency::parse(&a.account.currency).map_err(|_| Problem::internal())?;
    Ok(AccountOut {
        id: a.account.id,
        legal_name: a.account.legal_name,
        currency: a.account.currency,
        status: a.account.status,
        credit_limit: Money::new(a.account.credit_limit, currency),
        posted_balance: Money::new(a.posted_balance, currency),
        program_id: a.account.program_id,
        created_at: a.account.created_at,
    })
}

fn parse_open(caller: &Caller, body: &OpenAccount) -> Result<NewAccount, Problem> {
    let mut v = Violations::new();
    let requested = body
        .program_id
        .as_deref()
        .and_then(|p| v.check("/program_id", program::parse(p)));
    let legal_name = v.check("/legal_name", parse_legal_name(&body.legal_name));
    let currency = v.check("/currency", Currency::parse(&body.currency));
    let credit_limit = body.credit_limit.parse("/credit_limit", false, &mut v);
    if let (Some(c), Some(l)) = (currency, credit_limit) {
        if c != l.currency {
            v.add("/credit_limit/currency", "must be the account's currency");
        }
    }
    v.into_result()?;
    let program_id = caller.within(requested.as_deref())?;
    match (legal_name, currency, credit_limit) {
        (Some(legal_name), Some(currency), Some(credit_limit)) => Ok(NewAccount {
            legal_name,
            currency,
            credit_limit,
            program_id,
        }),
        _ => Err(Problem::internal()),
    }
}

pub async fn open(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<OpenAccount>,
) -> Result<HttpResponse, Problem> {
    caller.require("accounts:write")?;
    let new = parse_open(&caller, &body.0)?;
    let created = db::run_named(&state.pool, "open_account", move |conn| {
        store::open_account(conn, &new).map_err(db_problem)
    })
    .await?;
    tracing::info!(account_id = %created.account.id, subject = %caller.subject, "account opened");
    Ok(HttpResponse::Created().json(account_out(created)?))
}

pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    caller.require("accounts:read")?;
    let id = id.into_inner();
    let found = db::run(&state.pool, move |conn| {
        store::find_account(conn, id).map_err(db_problem)
    })
    .await?;
    // Another program's account is answered as an unknown one.
    let account = found
        .filter(|a| caller.sees(&a.account.program_id))
        .ok_or_else(|| Problem::not_found("account"))?;
    Ok(HttpResponse::Ok().json(account_out(account)?))
}

#[derive(Debug, Serialize)]
pub struct EntryOut {
    id: String,
    journal_id: Uuid,
    ledger_account: String,
    direction: String,
    amount: Money,
    payment_id: Uuid,
    created_at: chrono::DateTime<chrono::Utc>,
}

pub async fn ledger_entries(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    caller.require("accounts:read")?;
    let id = id.into_inner();
    let limit = page_limit(query.limit)?;
    let after = match &query.cursor {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .map_err(|_| Problem::field("/cursor", "not a cursor this API issued"))?,
    };
    let bound = caller.program().map(str::to_owned);
    let rows = db::run(&state.pool, move |conn| {
        let program = store::account_program(conn, id).map_err(db_problem)?;
        if !program.is_some_and(|p| program::visible(bound.as_deref(), &p)) {
            return Err(Problem::not_found("account"));
        }
        ledger::entries(conn, id, after, limit).map_err(db_problem)
    })
    .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let data = rows
        .into_iter()
        .map(|r| {
            let currency = Currency::parse(&r.currency).map_err(|_| Problem::internal())?;
            Ok(EntryOut {
                id: r.id.to_string(),
                journal_id: r.journal_id,
                ledger_account: r.ledger_account,
                direction: r.direction,
                amount: Money::new(r.amount, currency),
                payment_id: r.payment_id,
                created_at: r.created_at,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}
