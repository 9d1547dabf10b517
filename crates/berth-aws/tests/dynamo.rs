//! The DynamoDB ledger against moto's DynamoDB on the loopback interface
//! (started with `scripts/moto-server`, which installs moto into a venv on
//! its first run): the whole ledger contract, two handles racing, and a
//! missing table reported plainly. Nothing is skipped when moto is missing:
//! the test fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use berth_aws::DynamoLedger;
use berth_core::ledger::{contract, Ledger, LedgerError};
use berth_core::ClaimName;

/// How long moto may take to answer; its first run installs it from PyPI.
const MOTO_START: Duration = Duration::from_secs(300);

/// moto's server, killed when dropped.
struct Moto {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Moto {
    fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto-server");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let mut moto = Moto { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log };
        let started = Instant::now();
        while TcpStream::connect_timeout(&moto.addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto exited ({status}):\n{}", std::fs::read_to_string(moto.log.path()).unwrap_or_default());
            }
            assert!(started.elapsed() < MOTO_START, "moto did not listen on {} in {MOTO_START:?}", moto.addr);
            std::thread::sleep(Duration::from_millis(200));
        }
        moto
    }

    fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .endpoint_url(format!("http://{}", self.addr))
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_passes_the_ledger_contract_and_reports_a_missing_table() {
    let moto = Moto::start();
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
