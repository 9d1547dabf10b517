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
pub mod permissions;

pub struct Moto {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
    /// moto's recording of every request it answered (its recorder).
    recording: tempfile::NamedTempFile,
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
        let recording = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&script)
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", recording.path())
            .args(first)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let mut moto = Moto { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log, recording };
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

    /// One SDK configuration for every client (ECS, EC2, ELBv2, DynamoDB)
    /// of the test's own: setting up what the stack would, playing ECS.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_as("testing")
    }

    /// The SDK configuration for berth's controller: its calls are signed
    /// with its own access key, [`permissions::CONTROLLER_KEY`], so the
    /// recording tells them from the test's.
    pub fn controller_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_as(permissions::CONTROLLER_KEY)
    }

    fn sdk_config_as(&self, key: &str) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                key, "testing", None, None, "moto",
            )))
            .endpoint_url(format!("http://{}", self.addr))
            .build()
    }

    /// Every request moto has answered so far, as its recorder wrote them.
    pub fn recording(&self) -> String {
        std::fs::read_to_string(self.recording.path()).unwrap_or_default()
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

/// The blog's network in miniature: a VPC with DNS hostnames, one subnet
/// in us-east-1a and a security group; returns (vpc, subnet, group).
pub async fn network(ec2: &aws_sdk_ec2::Client) -> (String, String, String) {
    let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap();
    let subnet = subnet.subnet().unwrap().subnet_id().unwrap().to_owned();
    let sg = ec2.create_security_group().group_name("tasks").description("tasks").vpc_id(&vpc).send().await;
    let sg = sg.unwrap().group_id().unwrap().to_owned();
    (vpc, subnet, sg)
}

/// Registers a revision of the `files` task definition (a Fargate task of
/// one container, `app`, serving on 5000) running `image`.
pub async fn register_files_revision(ecs: &aws_sdk_ecs::Client, image: &str) -> u32 {
    use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode, PortMapping};
    let d = ecs
        .register_task_definition()
        .family("files")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(image)
                .memory(512)
                .port_mappings(PortMapping::builder().container_port(5000).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    u32::try_from(d.task_definition().unwrap().revision()).unwrap()
}

/// The `files` service's task definition as berth knows it.
pub fn files_definition() -> berth_core::TaskDefinition {
    berth_core::TaskDefinition {
        family: "files".into(),
        revision: 1,
        command: vec![],
        env: Default::default(),
        port: 5000,
        health_check: None,
        stop_timeout: Duration::from_secs(30),
        secrets: Default::default(),
        container: None,
    }
}

/// The Lambda's settings for one `files` service of one task on
/// `cluster`, in `subnet` with security group `sg`, with no target group.
pub fn files_settings(cluster: &str, subnet: String, sg: String) -> berth_aws::AwsSettings {
    berth_aws::AwsSettings {
        cluster: cluster.into(),
        subnets: vec![subnet],
        security_groups: vec![sg],
        assign_public_ip: false,
        spot: false,
        container: "app".into(),
        target_group_arn: None,
        volume: berth_aws::EbsVolumeSpec {
            name: "data".into(),
            role_arn: "arn:aws:iam::123456789012:role/berth-ecs-infrastructure".into(),
            size_gib: 10,
            volume_type: "gp3".into(),
            iops: None,
            throughput: None,
            encrypted: true,
            kms_key_id: None,
            filesystem_type: "ext4".into(),
            initialization_rate: None,
        },
        task_definition_arn: None,
        backups: Vec::new(),
        autoscaling: Vec::new(),
        services: vec![berth_core::service::ServiceSpec {
            name: "files".into(),
            desired_count: 1,
            definition: files_definition(),
            revisions: vec![],
            retention: berth_core::retention::KeepPolicy { last: Some(5), ..Default::default() },
            lease: Duration::from_secs(60),
            adopt: true,
            healthy_reset: Duration::from_secs(600),
            when_scaled: Default::default(),
        }],
    }
}
