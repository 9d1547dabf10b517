//! The DynamoDB ledger against moto's DynamoDB on the loopback interface
//! (started with `scripts/moto-server`, which installs moto into a venv on
//! its first run): the whole ledger contract, two handles racing, and a
//! missing table reported plainly. Nothing is skipped when moto is missing:
//! the test fails.

mod moto;

use std::sync::atomic::{AtomicUsize, Ordering};

use berth_aws::DynamoLedger;
use berth_core::ledger::{contract, Ledger, LedgerError};
use berth_core::ClaimName;

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_passes_the_ledger_contract_and_reports_a_missing_table() {
    // One request at a time: moto's threaded server races conditional writes.
    let moto = moto::Moto::start_serial();
    let client = moto.client();
    DynamoLedger::create_table(&client, "berth-ledger").await.expect("create the ledger table");

    // Each check on its own prefix of the one table.
    let n = AtomicUsize::new(0);
    contract::run_all(|| {
        DynamoLedger::new(client.clone(), "berth-ledger")
            .with_prefix(format!("c{}/", n.fetch_add(1, Ordering::Relaxed)))
    })
    .await;

    // Two handles (two Lambda invocations) on one ledger: one write wins.
    let a = DynamoLedger::new(moto.client(), "berth-ledger").with_prefix("race/");
    let b = DynamoLedger::new(moto.client(), "berth-ledger").with_prefix("race/");
    contract::concurrent_cas(&a, &b).await;

    // A table that does not exist: one plain error naming it, not a panic.
    let missing = DynamoLedger::new(client.clone(), "no-such-table");
    match missing.claim(&ClaimName::parse("files-0").unwrap()).await {
        Err(LedgerError::Unavailable(m)) => assert!(m.contains("ResourceNotFound"), "{m}"),
        other => panic!("a missing table must be Unavailable, got {other:?}"),
    }
}
