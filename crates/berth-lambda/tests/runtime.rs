//! The Lambda binary itself, run as Lambda runs it: a process that asks the
//! Runtime API (played here by a small HTTP server on loopback) for its next
//! invocation and posts the answer, with DynamoDB on moto.
//!
//! `BERTH_LAMBDA_BIN` runs another build of it instead of this test's own
//! (`scripts/build-lambda --x86-64`'s `bootstrap`, to check the package).

use std::collections::VecDeque;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use berth_aws::DynamoLedger;
use berth_core::Ledger;
use serde_json::{json, Value};

const TABLE: &str = "berth-ledger";

fn binary() -> PathBuf {
    std::env::var_os("BERTH_LAMBDA_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-lambda")), PathBuf::from)
}

/// moto's server (`scripts/moto-server`), killed when dropped.
struct Moto(Child, u16);

impl Moto {
    fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto-server");
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("scripts/moto-server runs");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(300), "moto did not listen");
            std::thread::sleep(Duration::from_millis(200));
        }
        Moto(child, port)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Runtime API's side: invocations to hand out, answers received.
#[derive(Clone, Default)]
struct RuntimeApi {
    pending: Arc<Mutex<VecDeque<(String, Value)>>>,
    answers: Arc<Mutex<Vec<(String, String, Value)>>>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    loop {
        let job = api.pending.lock().unwrap().pop_front();
        if let Some((id, payload)) = job {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
            let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
            headers.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().unwrap());
            let arn = "arn:aws:lambda:us-east-1:123456789012:function:berth-controller";
            headers.insert("lambda-runtime-invoked-function-arn", arn.parse().unwrap());
            return (headers, payload.to_string());
        }
        // Long poll, as the real API does between invocations.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn answer(State(api): State<RuntimeApi>, UrlPath((id, kind)): UrlPath<(String, String)>, body: String) {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    api.answers.lock().unwrap().push((id, kind, value));
}

fn env_for(command: &mut Command, moto: &Moto) {
    command
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("BERTH_AWS_ENDPOINT", moto.url())
        .env("BERTH_TABLE", TABLE)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_invocations_from_the_runtime_api_and_refuses_to_start_without_settings() {
    let moto = Moto::start();

    // Without BERTH_CONFIG: one clear error, before any invocation.
    let mut bare = Command::new(binary());
    env_for(&mut bare, &moto);
    let out = bare.env_remove("BERTH_CONFIG").env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9").output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BERTH_CONFIG is not set"), "{text}");

    // The ledger table, as the stack makes it.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_REGION", "us-east-1");
    let dynamo = berth_aws::dynamodb_client(Some(&moto.url())).await;
    DynamoLedger::create_table(&dynamo, TABLE).await.unwrap();

    let api = RuntimeApi::default();
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answer))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime_api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    // One SQS batch: a message that is not JSON (dropped), and an event of
    // another cluster's task (out of scope): nothing to redeliver.
    let foreign = json!({
        "version": "0", "id": "e-1", "detail-type": "ECS Task State Change", "source": "aws.ecs",
        "account": "123456789012", "time": "2026-12-02T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:ecs:us-east-1:123456789012:task/other/abc"],
        "detail": { "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/other",
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/other/abc", "lastStatus": "STOPPED",
            "desiredStatus": "STOPPED", "version": 3 }
    });
    let batch = json!({ "Records": [
        { "messageId": "m-1", "body": "{not json" },
        { "messageId": "m-2", "body": foreign.to_string() },
    ]});
    api.pending.lock().unwrap().push_back(("r-1".into(), batch));

    let settings = json!({
        "cluster": "berth", "subnets": ["subnet-1"], "security_groups": ["sg-1"], "container": "files",
        "task_definition_arn": "arn:aws:ecs:us-east-1:123456789012:task-definition/BerthTaskDef:4",
        "volume": { "name": "data", "role_arn": "arn:aws:iam::123456789012:role/infra" },
        "services": [{ "name": "files", "desired_count": 2,
            "definition": { "family": "BerthTaskDef", "revision": 1, "command": [], "env": {}, "port": 5000,
                "health_check": null, "stop_timeout": 30 },
            "retention": { "last": 7 }, "lease": 60, "healthy_reset": 600 }]
    });
    let mut lambda = Command::new(binary());
    env_for(&mut lambda, &moto);
    let mut child = lambda
        .env("BERTH_CONFIG", settings.to_string())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "berth-controller")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        .spawn()
        .unwrap();

    let started = Instant::now();
    let answers = loop {
        let answers = api.answers.lock().unwrap().clone();
        if !answers.is_empty() {
            break answers;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!("the Lambda exited ({status}): {}", String::from_utf8_lossy(&out.stderr));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no answer from the Lambda");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let (id, kind, body) = &answers[0];
    assert_eq!((id.as_str(), kind.as_str()), ("r-1", "response"), "{body}");
    assert_eq!(body["batchItemFailures"], json!([]), "{body}");
    assert_eq!(body["outcomes"], json!(["dropped: not JSON", "out-of-scope"]), "{body}");

    // It really used the ledger: the service's record, at ECS's revision.
    let record = DynamoLedger::new(dynamo, TABLE).service("files").await.unwrap().expect("the service record");
    assert_eq!(record.active, 4);
}
