//! Card numbers (ADR 0014): revealed only with the `cards:reveal` scope; the `pan` key
//! rotated, every stored ciphertext re-wrapped and the old version retired through
//! `cargo xtask keys`, against this test's own OpenBao (so the rotation disturbs no other
//! test); through all of it every card stays revealable, fingerprints stay the same and
//! duplicates are still refused. No card number in logs, other responses or the
//! commands' output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::json;
use shared_kernel::config::VaultSettings;
use shared_kernel::secrets::Secret;
use shared_kernel::vault::{KeyInfo, Transit};
use tests::infra::OwnVault;
use tests::TestSystem;

/// (number, its masked form); the last is 15 digits.
const CARDS: [(&str, &str); 4] = [
    ("4000056655665556", "400005******5556"),
    ("4111111111111111", "411111******1111"),
    ("5555555555554444", "555555******4444"),
    ("378282246310005", "378282*****0005"),
];
/// Issued after the rotation.
const LATER: (&str, &str) = ("6011111111111117", "601111******1117");

const FINGERPRINTS: &str = "SELECT string_agg(id::text || '=' || pan_fingerprint, ',' ORDER BY id) AS value FROM accounts.cards";
const CIPHERTEXTS: &str = "SELECT string_agg(id::text || '=' || pan_ciphertext, ',' ORDER BY id) AS value FROM accounts.cards";

struct Keys<'a> {
    sys: &'a TestSystem,
    vault: &'a OwnVault,
    transit: Transit,
}

impl Keys<'_> {
    /// `cargo xtask keys <args>` against this test's database and Vault: (ok, output).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let xtask = tests::procs::bin_dir().join("xtask");
        assert!(
            xtask.exists(),
            "build the binaries first (cargo build -p xtask)"
        );
        let out = std::process::Command::new(xtask)
            .arg("keys")
            .args(args)
            .env("ACCOUNTS__DATABASE__URL", &self.sys.database.url)
            .env("ACCOUNTS__VAULT__ADDR", &self.vault.addr)
            .env("ACCOUNTS__VAULT__TOKEN", &self.vault.token)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr)
            + &format!("({})", out.status);
        (out.status.success(), text)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(ok, "keys {args:?} failed:\n{text}");
        text
    }

    async fn pan_key(&self) -> KeyInfo {
        self.transit.key_info("pan").await.unwrap()
    }
}

async fn count(sys: &TestSystem, condition: &str) -> i64 {
    sys.count(&format!(
        "SELECT count(*) AS count FROM accounts.cards WHERE {condition}"
    ))
    .await
}

async fn issue(sys: &TestSystem, account: &str, pan: Option<&str>) -> tests::Response {
    let mut body =
        json!({"cardholder_name": "Ada Driver", "expiry_month": 12, "expiry_year": 2030});
    if let Some(pan) = pan {
        body["pan"] = json!(pan);
    }
    sys.post(
        &format!("{}/v1/accounts/{account}/cards", sys.accounts),
        body,
    )
    .await
}

async fn reveal(sys: &TestSystem, card: &str, token: Option<&str>) -> tests::Response {
    sys.send(
        Method::POST,
        &format!("{}/v1/cards/{card}/reveal", sys.accounts),
        token,
        None,
        &[],
    )
    .await
}

/// Reveals `card` with the scope and checks the number, its masked form and last four.
async fn assert_reveals(sys: &TestSystem, card: &str, pan: &str, masked: &str) {
    let res = reveal(sys, card, Some(&sys.token_with(&["cards:reveal"]))).await;
    assert_eq!(res.status, 200, "{:?}", res.body["detail"]);
    assert_eq!(res.headers["cache-control"], "no-store");
    assert_eq!(res.body["id"], card);
    assert!(res.body["pan"] == pan, "card {card}: a different number");
    assert_eq!(res.body["pan_masked"], masked);
    assert_eq!(res.body["last4"], &pan[pan.len() - 4..]);
}

fn assert_problem(res: &tests::Response, status: u16, slug: &str) {
    assert_eq!(res.status, status, "{:?}", res.body);
    assert_eq!(res.content_type, "application/problem+json");
    assert_eq!(
        res.body["type"],
        format!("https://problems.fleet-cards.example/{slug}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cards_are_revealed_only_with_the_scope_and_survive_key_rotation() {
    let mut vault = OwnVault::start().await;
    let sys = TestSystem::start_with_vault(&vault.addr, &vault.token).await;
    let keys = Keys {
        sys: &sys,
        vault: &vault,
        transit: Transit::new(&VaultSettings {
            addr: vault.addr.clone(),
            token: Secret::new(vault.token.clone()),
            transit_mount: "transit".to_owned(),
        })
        .unwrap(),
    };
    let account = sys
        .post(
            &format!("{}/v1/accounts", sys.accounts),
            json!({"legal_name": "Keys Haulage", "currency": "USD",
                   "credit_limit": {"amount": 100_000, "currency": "USD"}}),
        )
        .await;
    assert_eq!(account.status, 201, "{:?}", account.body);
    let account = account.body["id"].as_str().unwrap().to_owned();

    // Several cards, all encrypted with version 1 of `pan`.
    let mut issued: Vec<(String, &str, &str)> = Vec::new();
    for (pan, masked) in CARDS {
        let res = issue(&sys, &account, Some(pan)).await;
        assert_eq!(res.status, 201, "{:?}", res.body);
        assert!(
            res.body.get("pan").is_none(),
            "issuance never returns the number"
        );
        issued.push((res.body["id"].as_str().unwrap().to_owned(), pan, masked));
    }
    let generated = issue(&sys, &account, None).await;
    assert_eq!(generated.status, 201, "{:?}", generated.body);
    let generated_id = generated.body["id"].as_str().unwrap().to_owned();
    assert_eq!(count(&sys, "pan_ciphertext LIKE 'vault:v1:%'").await, 5);

    // Revealed with the scope; refused without it, without a token, and for no card.
    for (id, pan, masked) in &issued {
        assert_reveals(&sys, id, pan, masked).await;
    }
    let res = reveal(
        &sys,
        &generated_id,
        Some(&sys.token_with(&["cards:reveal"])),
    )
    .await;
    assert_eq!(res.status, 200, "{:?}", res.body["detail"]);
    let generated_pan = res.body["pan"].as_str().unwrap().to_owned();
    assert!(generated_pan.starts_with("400005") && generated_pan.len() == 16);
    assert!(accounts::domain::card::luhn_valid(&generated_pan));
    assert_eq!(res.body["last4"], generated.body["last4"]);
    let masked_generated = format!("400005******{}", &generated_pan[12..]);
    assert_eq!(res.body["pan_masked"], masked_generated);
    issued.push((generated_id, "", ""));

    let forbidden = reveal(&sys, &issued[0].0, Some(&sys.token())).await;
    assert_problem(&forbidden, 403, "forbidden");
    assert!(forbidden.body["detail"]
        .as_str()
        .unwrap()
        .contains("cards:reveal"));
    assert_problem(
        &reveal(&sys, &issued[0].0, None).await,
        401,
        "unauthenticated",
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    let token = sys.token_with(&["cards:reveal"]);
    assert_problem(
        &reveal(&sys, &unknown, Some(&token)).await,
        404,
        "not-found",
    );
    assert_problem(
        &reveal(&sys, "not-a-uuid", Some(&token)).await,
        404,
        "not-found",
    );

    // Every reveal is audited, the refused ones too, by route and card, never the number.
    let first = &issued[0].0;
    assert_eq!(
        sys.count(&format!(
            "SELECT count(*) AS count FROM accounts.audit_events
             WHERE action = 'POST /v1/cards/{{id}}/reveal' AND resource = '/v1/cards/{first}/reveal'"
        ))
        .await,
        3,
        "granted, refused for its scope, refused without a token"
    );
    assert_eq!(
        sys.count(
            "SELECT count(*) AS count FROM accounts.audit_events
             WHERE action = 'POST /v1/cards/{id}/reveal' AND outcome = 'succeeded'
               AND subject = 'test-client'"
        )
        .await,
        5,
        "one granted reveal per card"
    );

    let fingerprints = sys.text(FINGERPRINTS).await;
    let v1_ciphertexts = sys.text(CIPHERTEXTS).await;
    let status = keys.ok(&["status"]);
    assert!(
        status.contains("pan: latest version 1, min decryption version 1"),
        "{status}"
    );
    assert!(status.contains("v1: 5 card ciphertext(s)"), "{status}");
    assert!(
        status.contains("pan-fingerprint: latest version 1"),
        "{status}"
    );

    // Rotate: new cards use version 2, the stored ones are still on version 1.
    let rotated = keys.ok(&["rotate"]);
    assert!(rotated.contains("latest version 2"), "{rotated}");
    assert_eq!(
        keys.pan_key().await,
        KeyInfo {
            latest_version: 2,
            min_decryption_version: 1
        }
    );
    let later = issue(&sys, &account, Some(LATER.0)).await;
    assert_eq!(later.status, 201, "{:?}", later.body);
    let later_id = later.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        count(
            &sys,
            &format!("id = '{later_id}' AND pan_ciphertext LIKE 'vault:v2:%'")
        )
        .await,
        1,
        "a card issued after the rotation is encrypted with version 2"
    );
    assert_eq!(count(&sys, "pan_ciphertext LIKE 'vault:v1:%'").await, 5);

    // Retiring version 1 is refused while a ciphertext needs it, and changes nothing.
    let (ok, refused) = keys.run(&["retire"]);
    assert!(!ok, "retire before rewrap must fail:\n{refused}");
    assert!(
        refused.contains("5 stored card ciphertext(s) are older than key version 2"),
        "{refused}"
    );
    assert!(refused.contains("keys rewrap"), "{refused}");
    assert_eq!(keys.pan_key().await.min_decryption_version, 1);

    // Re-wrap in batches of two: everything ends on version 2, with new ciphertexts.
    let rewrapped = keys.ok(&["rewrap", "--batch", "2"]);
    assert!(
        rewrapped.contains("re-wrapped 5 card ciphertext(s) onto pan v2"),
        "{rewrapped}"
    );
    assert_eq!(count(&sys, "pan_ciphertext NOT LIKE 'vault:v2:%'").await, 0);
    assert_eq!(count(&sys, "true").await, 6);
    let v2_ciphertexts = sys.text(CIPHERTEXTS).await;
    for old in v1_ciphertexts.split(',') {
        let (id, ciphertext) = old.split_once('=').unwrap();
        assert!(
            !v2_ciphertexts.contains(ciphertext),
            "card {id} kept its version 1 ciphertext"
        );
    }
    let again = keys.ok(&["rewrap"]);
    assert!(again.contains("re-wrapped 0 card"), "{again}");

    // Retire version 1: a version 1 ciphertext no longer decrypts.
    let retired = keys.ok(&["retire"]);
    assert!(retired.contains("min decryption version 2"), "{retired}");
    assert_eq!(
        keys.pan_key().await,
        KeyInfo {
            latest_version: 2,
            min_decryption_version: 2
        }
    );
    for old in v1_ciphertexts.split(',') {
        let ciphertext = old.split_once('=').unwrap().1;
        assert!(
            keys.transit.decrypt("pan", ciphertext).await.is_err(),
            "a retired version must not decrypt"
        );
    }
    let status = keys.ok(&["status"]);
    assert!(
        status.contains("pan: latest version 2, min decryption version 2"),
        "{status}"
    );
    assert!(status.contains("v2: 6 card ciphertext(s)"), "{status}");
    assert!(
        status.contains("pan-fingerprint: latest version 1, min decryption version 1"),
        "the fingerprint key is never rotated: {status}"
    );

    // Every card still reveals its number; fingerprints are unchanged, so a duplicate
    // number is still refused.
    for (id, pan, masked) in &issued {
        if pan.is_empty() {
            let res = reveal(&sys, id, Some(&token)).await;
            assert_eq!(res.status, 200, "{:?}", res.body["detail"]);
            assert!(res.body["pan"] == generated_pan.as_str());
        } else {
            assert_reveals(&sys, id, pan, masked).await;
        }
    }
    assert_reveals(&sys, &later_id, LATER.0, LATER.1).await;
    let after = sys.text(FINGERPRINTS).await;
    assert!(
        without(&after, &later_id) == fingerprints,
        "fingerprints changed"
    );
    for pan in [CARDS[0].0, LATER.0, generated_pan.as_str()] {
        let dup = issue(&sys, &account, Some(pan)).await;
        assert_problem(&dup, 409, "conflict");
    }
    assert_eq!(count(&sys, "true").await, 6);

    // A ciphertext of the retired version (as from a backup) is refused by Vault: a 500
    // problem, not an outage.
    let (old_id, old_ciphertext) = v1_ciphertexts
        .split(',')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap();
    sys.exec(&format!(
        "UPDATE accounts.cards SET pan_ciphertext = '{old_ciphertext}' WHERE id = '{old_id}'"
    ))
    .await;
    assert_problem(
        &reveal(&sys, old_id, Some(&token)).await,
        500,
        "internal-error",
    );

    // Vault down: reveal is a 503 problem.
    vault.stop();
    let down = reveal(&sys, &later_id, Some(&token)).await;
    assert_problem(&down, 503, "service-unavailable");

    // No card number anywhere but in the reveal responses.
    let mut numbers: Vec<&str> = CARDS.iter().map(|(p, _)| *p).collect();
    numbers.extend([LATER.0, generated_pan.as_str()]);
    let logs = tests::logs::captured();
    let others: Vec<String> = sys
        .exchanges
        .lock()
        .unwrap()
        .iter()
        .filter(|e| !(e.url.ends_with("/reveal") && e.status == 200))
        .map(|e| e.body.to_string())
        .collect();
    let outputs = [status, rotated, refused, rewrapped, retired];
    for n in &numbers {
        let b64 = base64_of(n);
        assert!(
            !logs.contains(n) && !logs.contains(&b64),
            "a card number in the logs"
        );
        assert!(
            !others.iter().any(|b| b.contains(n)),
            "a card number in a response other than reveal"
        );
        assert!(
            !outputs.iter().any(|o| o.contains(n)),
            "a card number in the keys commands' output"
        );
    }
    assert!(
        logs.contains("card number revealed"),
        "reveals are logged, by card id"
    );

    sys.assert_exchanges_match_contracts();
    sys.shutdown().await;
}

/// The list `id=fingerprint,...` without the card `id`.
fn without(list: &str, id: &str) -> String {
    list.split(',')
        .filter(|e| !e.starts_with(&format!("{id}=")))
        .collect::<Vec<_>>()
        .join(",")
}

fn base64_of(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_vaults_encoding() {
    assert_eq!(base64_of("4111111111111111"), "NDExMTExMTExMTExMTExMQ==");
    assert_eq!(base64_of("378282246310005"), "Mzc4MjgyMjQ2MzEwMDA1");
}
