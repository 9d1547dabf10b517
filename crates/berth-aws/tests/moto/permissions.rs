//! Issue 25's proof that the stack lets the controller do what it does:
//! every AWS call berth's controller made in a test on moto (moto's
//! recorder keeps each request; the controller signs with its own access
//! key) is checked against the IAM policy the CDK stack synthesizes for
//! the Lambda's role. A call the policy does not allow fails the test: on
//! AWS it would be AccessDenied.
//!
//! What is checked: the action (with the policy's wildcards), and for the
//! actions with resource-level permissions, that an allowing statement
//! names that kind of resource (a task, a task definition, a volume, a
//! snapshot…), because a statement on the wrong kind is an AccessDenied
//! too. What is not: the exact ARNs (the template's are CloudFormation
//! references, the test's moto's names) and the policy's conditions (on
//! the cluster and on berth's tags, which berth's requests carry). Calls
//! AWS authorizes without an API call of their own are added by rule:
//! RunTask passes the task's roles (iam:PassRole), a snapshot made with
//! tags is tagged on creation (ec2:CreateTags).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::Value;

/// The access key of berth's controller in the tests.
pub const CONTROLLER_KEY: &str = "berth-controller";

/// One statement of the policy, its references rendered as wildcards.
#[derive(Debug)]
struct Statement {
    actions: Vec<String>,
    resources: Vec<String>,
}

/// The allow statements of the policies attached to the Lambda's role in
/// the synthesized template (synthesized once per test process).
fn lambda_policy() -> &'static Vec<Statement> {
    static POLICY: OnceLock<Vec<Statement>> = OnceLock::new();
    POLICY.get_or_init(|| statements(&synthesize()))
}

/// `cdk synth` of the stack, as scripts/lint-deploy runs it (deploy/cdk's
/// packages come from `npm ci` there, before the tests).
fn synthesize() -> Value {
    let cdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cdk");
    assert!(
        cdk.join("node_modules").is_dir(),
        "deploy/cdk has no node_modules: scripts/test (scripts/lint-deploy) runs npm ci first"
    );
    let out = tempfile::tempdir().unwrap();
    let package = tempfile::tempdir().unwrap();
    std::fs::write(package.path().join("bootstrap"), "#!/bin/sh\nexit 1\n").unwrap();
    let synth = Command::new("npx")
        .current_dir(&cdk)
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .args(["cdk", "synth", "--quiet", "--no-notices", "-o"])
        .arg(out.path())
        .args([
            "-c",
            "certificateArn=arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000",
        ])
        .arg("-c")
        .arg(format!("lambdaAsset={}", package.path().display()))
        .output()
        .expect("npx (Node.js) runs cdk synth");
    assert!(synth.status.success(), "cdk synth failed:\n{}", String::from_utf8_lossy(&synth.stderr));
    let text = std::fs::read_to_string(out.path().join("BerthStack.template.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A CloudFormation value as a pattern: references become `*`.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("Fn::Join") {
            Some(Value::Array(join)) => {
                let sep = join[0].as_str().unwrap_or("");
                join[1]
                    .as_array()
                    .map(|parts| parts.iter().map(render).collect::<Vec<_>>().join(sep))
                    .unwrap_or_default()
            }
            _ => "*".into(),
        },
        _ => "*".into(),
    }
}

fn list(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    }
}

fn statements(template: &Value) -> Vec<Statement> {
    let resources = template["Resources"].as_object().unwrap();
    let (_, lambda) = resources
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::Lambda::Function" && r["Properties"]["Handler"] != "index.handler")
        .expect("the controller Lambda");
    let role = lambda["Properties"]["Role"]["Fn::GetAtt"][0].as_str().expect("the Lambda's role").to_owned();
    let mut out = Vec::new();
    for r in resources.values().filter(|r| r["Type"] == "AWS::IAM::Policy") {
        let roles = list(r["Properties"].get("Roles"));
        if !roles.iter().any(|v| v["Ref"] == role.as_str()) {
            continue;
        }
        for st in list(r["Properties"]["PolicyDocument"].get("Statement")) {
            if st["Effect"] != "Allow" {
                continue;
            }
            out.push(Statement {
                actions: list(st.get("Action")).iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
                resources: list(st.get("Resource")).into_iter().map(render).collect(),
            });
        }
    }
    assert!(!out.is_empty(), "no policy is attached to the Lambda's role {role}");
    out
}

/// `pattern` (IAM's `*` and `?`) matches `text`, ignoring case as IAM does for actions.
fn matches(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The kinds of resource an action acts on, for the actions with
/// resource-level permissions (per the Service Authorization Reference).
fn resource_kinds(action: &str) -> &'static [&'static str] {
    match action {
        "ecs:RunTask" => &[":task-definition/"],
        "ecs:StopTask" | "ecs:DescribeTasks" => &[":task/"],
        "ec2:CreateSnapshot" => &[":volume/", ":snapshot/"],
        "ec2:DeleteSnapshot" | "ec2:CopySnapshot" => &[":snapshot/"],
        "ec2:DeleteVolume" => &[":volume/"],
        _ => &[],
    }
}

/// The IAM actions of berth's controller in a moto recording.
pub fn controller_actions(recording: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in recording.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap();
        let header = |name: &str| {
            entry["headers"]
                .as_object()
                .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                .and_then(|(_, v)| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let auth = header("Authorization");
        let Some(scope) = auth.split("Credential=").nth(1) else { continue };
        let parts: Vec<&str> = scope.split(['/', ',']).collect();
        if parts.first() != Some(&CONTROLLER_KEY) {
            continue;
        }
        let prefix = match parts.get(3).copied() {
            Some("monitoring") => "cloudwatch",
            Some(service) => service,
            None => continue,
        };
        let target = header("X-Amz-Target");
        let operation = match target.rsplit_once('.') {
            Some((_, op)) => op.to_owned(),
            None => {
                let body = entry["body"].as_str().unwrap_or("");
                let body = match entry["body_encoded"].as_bool() {
                    Some(true) => String::from_utf8_lossy(
                        &base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default(),
                    )
                    .into_owned(),
                    _ => body.to_owned(),
                };
                let Some(action) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) else { continue };
                action.to_owned()
            }
        };
        out.insert(format!("{prefix}:{operation}"));
    }
    out
}

/// What the synthesized policy does not allow of `actions` (empty: all allowed).
pub fn denied(actions: &BTreeSet<String>) -> Vec<String> {
    let policy = lambda_policy();
    let mut wanted: BTreeSet<String> = actions.clone();
    // Authorized with the call, without a call of their own: RunTask
    // passes the task's and the infrastructure's roles; a snapshot made or
    // copied with tags (berth's always are) is tagged on creation.
    if actions.contains("ecs:RunTask") {
        wanted.insert("iam:PassRole".into());
    }
    if actions.contains("ec2:CreateSnapshot") || actions.contains("ec2:CopySnapshot") {
        wanted.insert("ec2:CreateTags".into());
    }
    let mut out = Vec::new();
    for action in &wanted {
        let allowing: Vec<&Statement> =
            policy.iter().filter(|s| s.actions.iter().any(|p| matches(p, action))).collect();
        if allowing.is_empty() {
            out.push(format!("{action}: no statement allows it"));
            continue;
        }
        for kind in resource_kinds(action) {
            let covered =
                allowing.iter().flat_map(|s| &s.resources).any(|r| r == "*" || matches(&format!("*{kind}*"), r));
            if !covered {
                out.push(format!("{action}: allowed on no {} resource", kind.trim_matches(['/', ':'])));
            }
        }
    }
    out
}

/// Every call the controller made on `moto` is one the stack's policy
/// allows; `made` is one the test knows it made (so an empty recording
/// cannot pass).
pub fn assert_allowed(moto: &super::Moto, made: &str) {
    assert_well_formed(moto);
    let actions = controller_actions(&moto.recording());
    assert!(actions.contains(made), "the recording has the controller's calls ({made}): {actions:?}");
    let denied = denied(&actions);
    assert!(denied.is_empty(), "the stack's policy does not allow: {denied:#?}\n(calls made: {actions:?})");
}

/// Runs `scripts/check-requests` (botocore from moto's venv) on recorded
/// requests; whether they pass, and what it said.
pub fn check_requests(recorded: &str) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), recorded).unwrap();
    let venv = std::env::var("BERTH_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/berth/venv", std::env::var("HOME").unwrap_or_default()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check-requests");
    let out = Command::new(format!("{venv}/bin/python")).arg(&script).arg(file.path()).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// Every request the controller sent `moto` is well formed by the AWS
/// service models: moto ignores much of what it is sent, AWS checks it.
pub fn assert_well_formed(moto: &super::Moto) {
    let controller: String = moto
        .recording()
        .lines()
        .filter(|l| l.contains(&format!("Credential={CONTROLLER_KEY}/")))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!controller.is_empty(), "the recording has none of the controller's requests");
    let (ok, said) = check_requests(&controller);
    assert!(ok, "requests AWS would refuse:\n{said}");
}
