//! moto's server on the loopback interface for the AWS adapter tests
//! (started with `scripts/moto-server`, which installs moto into a venv on
//! its first run). Nothing is skipped when moto is missing: tests fail.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;

/// How long moto may take to answer; its first run installs it from PyPI.
const MOTO_START: Duration = Duration::from_secs(300);

/// moto's server, killed when dropped.
pub struct Moto {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Self {
        Self::launch(&[])
    }

    /// moto answering one request at a time (`scripts/moto-server
    /// --serial`): its threaded server lets two conditional writes of one
    /// version both succeed under load, where DynamoDB lets one.
    pub fn start_serial() -> Self {
        Self::launch(&["--serial"])
    }

    fn launch(first: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto-server");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&script)
            .args(first)
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

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// The endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One SDK configuration for every client (ECS, EC2, ELBv2, DynamoDB).
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "moto",
            )))
            .endpoint_url(format!("http://{}", self.addr))
            .build()
    }

    /// POSTs JSON to moto's own API (`/moto-api/...`); panics unless 2xx.
    /// A connection moto resets (seen in CI under load, right after it
    /// started answering) is tried again, up to a deadline.
    pub fn moto_api(&self, path: &str, json: &str) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            self.addr,
            json.len()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let answer = loop {
            let attempt = (|| -> std::io::Result<String> {
                let mut s = TcpStream::connect(self.addr)?;
                s.write_all(request.as_bytes())?;
                let mut answer = String::new();
                s.read_to_string(&mut answer)?;
                Ok(answer)
            })();
            match attempt {
                Ok(answer) => break answer,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("moto-api {path}: {e}; trying again");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!("moto-api {path}: {e}"),
            }
        };
        assert!(answer.starts_with("HTTP/1.1 2") || answer.starts_with("HTTP/1.0 2"), "{path}: {answer}");
    }

    /// ECS tasks advance only when a test says so (moto advances them one
    /// state per DescribeTasks otherwise).
    pub fn hold_ecs_tasks(&self) {
        self.moto_api(
            "/moto-api/state-manager/set-transition",
            r#"{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}}"#,
        );
    }
}
