//! ECS task definitions as input: `[[service]] task_definition = "FILE"`.
//!
//! The file is a task definition in the JSON that `aws ecs
//! describe-task-definition` prints (with or without its `taskDefinition`
//! wrapper) and `RegisterTaskDefinition` takes. Its essential container
//! becomes the service's container: `image`, `command`, `entryPoint`,
//! `environment`, `secrets`, `portMappings` (the first container port),
//! `healthCheck`, `stopTimeout`, `user`, `workingDirectory`, `memory` (its
//! hard limit); the task's `cpu` and `memory` its size; the volume marked `configuredAtLaunch` (the
//! one ECS attaches an EBS volume to at launch) its claim's volume, mounted
//! where the container's `mountPoints` put it.
//!
//! What the task definition says wins over the same settings in
//! berth.toml, but for `env` and `secrets`, which berth.toml adds to (and
//! overrides by name: a secret's `valueFrom` ARN, which cannot be read on
//! this machine, is replaced there by `env:NAME` or `file:PATH`). A field
//! berth does not honour is named in one warning, never dropped silently.
//! See <https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RegisterTaskDefinition.html>.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::config::{Invalid, ServiceConfig};

/// Task-level fields berth honours, or that describe rather than configure
/// (what `describe-task-definition` adds, and the launch type and network
/// mode, which `berth up` plays its own way).
const TASK_FIELDS: &[&str] = &[
    "family",
    "containerDefinitions",
    "cpu",
    "memory",
    "volumes",
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "requiresCompatibilities",
    "registeredAt",
    "registeredBy",
    "networkMode",
];

/// Container fields berth honours (`name` and `essential` pick the container).
const CONTAINER_FIELDS: &[&str] = &[
    "name",
    "essential",
    "image",
    "command",
    "entryPoint",
    "environment",
    "secrets",
    "portMappings",
    "healthCheck",
    "mountPoints",
    "stopTimeout",
    "user",
    "workingDirectory",
    "memory",
];

/// Reads the task definition at `path` into `service`; returns the fields
/// it does not honour.
pub(crate) fn apply_file(service: &mut ServiceConfig, path: &Path) -> Result<Vec<String>, Invalid> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    apply(service, &value).map_err(|e| Invalid(format!("{}: {e}", path.display())))
}

/// [`apply_file`] of parsed JSON.
pub(crate) fn apply(service: &mut ServiceConfig, value: &Value) -> Result<Vec<String>, Invalid> {
    let task = value.get("taskDefinition").unwrap_or(value);
    let task = task.as_object().ok_or("a task definition is a JSON object")?;
    let mut ignored: Vec<String> = task.keys().filter(|k| !TASK_FIELDS.contains(&k.as_str())).cloned().collect();

    let containers = task
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("containerDefinitions is missing or empty")?;
    // ECS's default for `essential` is true.
    let essential = |c: &&Value| c.get("essential").and_then(Value::as_bool).unwrap_or(true);
    let (index, container) =
        containers.iter().enumerate().find(|(_, c)| essential(c)).ok_or("no container is essential")?;
    let container = container.as_object().ok_or("a container definition is a JSON object")?;
    for (i, other) in containers.iter().enumerate().filter(|(i, _)| *i != index) {
        let name = other.get("name").and_then(Value::as_str).unwrap_or("?");
        ignored.push(format!("containerDefinitions[{i}] ({name}: berth up runs the essential container only)"));
    }
    ignored.extend(
        container
            .keys()
            .filter(|k| !CONTAINER_FIELDS.contains(&k.as_str()))
            .map(|k| format!("containerDefinitions[{index}].{k}")),
    );

    service.image = Some(string(container, "image")?.ok_or("the essential container has no image")?);
    service.command = strings(container, "command")?.unwrap_or_default();
    service.entry_point = strings(container, "entryPoint")?.unwrap_or_default();
    service.user = string(container, "user")?;
    service.working_dir = string(container, "workingDirectory")?;
    let mut env = pairs(container, "environment", "value")?;
    env.extend(std::mem::take(&mut service.env));
    service.env = env;
    let mut secrets = pairs(container, "secrets", "valueFrom")?;
    secrets.extend(std::mem::take(&mut service.secrets));
    service.secrets = secrets;
    if let Some(port) = container
        .get("portMappings")
        .and_then(Value::as_array)
        .and_then(|m| m.first())
        .and_then(|m| m.get("containerPort"))
    {
        service.port = port.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or("containerPort is not a port")?;
    }
    if let Some(seconds) = container.get("stopTimeout") {
        service.stop_timeout = Duration::from_secs(seconds.as_u64().ok_or("stopTimeout is not a whole number")?);
    }
    health_check(service, container.get("healthCheck"))?;
    service.mount_path = mount_path(task, container)?;
    if let Some(cpu) = task.get("cpu") {
        service.cpu = units(cpu, "vcpu", 1024).ok_or_else(|| format!("cpu {cpu} is not CPU units or \"N vCPU\""))?;
    }
    if let Some(memory) = task.get("memory") {
        service.memory = units(memory, "gb", 1024).ok_or_else(|| format!("memory {memory} is not MiB or \"N GB\""))?;
    }
    // A container's own `memory` is its hard limit within the task's.
    if let Some(memory) = container.get("memory") {
        let limit = memory.as_u64().and_then(|m| u32::try_from(m).ok()).ok_or("the container's memory is not MiB")?;
        service.memory = service.memory.min(limit);
    }
    Ok(ignored)
}

/// The container's health check, with ECS's defaults (30 s, 5 s, 3
/// retries, no start period); none without one, as on ECS.
fn health_check(service: &mut ServiceConfig, check: Option<&Value>) -> Result<(), Invalid> {
    let h = &mut service.health_check;
    let Some(check) = check.and_then(Value::as_object) else {
        h.enabled = false;
        return Ok(());
    };
    let seconds = |key: &str, default: u64| -> Result<Duration, Invalid> {
        match check.get(key) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => {
                v.as_u64().map(Duration::from_secs).ok_or(Invalid(format!("healthCheck.{key} is not whole seconds")))
            }
        }
    };
    h.enabled = true;
    h.http = None;
    h.command = Some(strings(check, "command")?.filter(|c| !c.is_empty()).ok_or("healthCheck has no command")?);
    h.interval = seconds("interval", 30)?;
    h.timeout = seconds("timeout", 5)?;
    h.start_period = seconds("startPeriod", 0)?;
    h.retries = match check.get("retries") {
        None => 3,
        Some(v) => v.as_u64().and_then(|r| u32::try_from(r).ok()).ok_or("healthCheck.retries is not a count")?,
    };
    Ok(())
}

/// Where the volume configured at launch is mounted in the container.
fn mount_path(task: &Map<String, Value>, container: &Map<String, Value>) -> Result<String, Invalid> {
    let volumes = task.get("volumes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let at_launch: Vec<&str> = volumes
        .iter()
        .filter(|v| v.get("configuredAtLaunch").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .collect();
    let [volume] = at_launch.as_slice() else {
        return Err(Invalid(format!(
            "berth needs exactly one volume with \"configuredAtLaunch\": true (the claim's volume); found {}",
            at_launch.len()
        )));
    };
    let mounts = container.get("mountPoints").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    mounts
        .iter()
        .find(|m| m.get("sourceVolume").and_then(Value::as_str) == Some(volume))
        .and_then(|m| m.get("containerPath").and_then(Value::as_str))
        .map(str::to_owned)
        .ok_or_else(|| Invalid(format!("the essential container has no mountPoints entry for volume {volume:?}")))
}

fn string(object: &Map<String, Value>, key: &str) -> Result<Option<String>, Invalid> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Invalid(format!("{key} is {other}, not a string"))),
    }
}

fn strings(object: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, Invalid> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            serde_json::from_value(v.clone()).map(Some).map_err(|_| Invalid(format!("{key} is not a list of strings")))
        }
    }
}

/// A list of `{"name": …, "<value>": …}` as a map.
fn pairs(object: &Map<String, Value>, key: &str, value: &str) -> Result<BTreeMap<String, String>, Invalid> {
    let Some(list) = object.get(key) else { return Ok(BTreeMap::new()) };
    let list = list.as_array().ok_or_else(|| format!("{key} is not a list"))?;
    list.iter()
        .map(|entry| {
            let name = entry.get("name").and_then(Value::as_str);
            let v = entry.get(value).and_then(Value::as_str);
            name.zip(v)
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .ok_or_else(|| Invalid(format!("an entry of {key} lacks \"name\" or \"{value}\"")))
        })
        .collect()
}

/// `256`, `"256"` or `"0.25 vCPU"` (with `unit` = "vcpu", `per` = 1024);
/// `"512"` or `"2 GB"` (with "gb").
fn units(value: &Value, unit: &str, per: u32) -> Option<u32> {
    if let Some(n) = value.as_u64() {
        return u32::try_from(n).ok();
    }
    let text = value.as_str()?.trim().to_ascii_lowercase();
    match text.strip_suffix(unit) {
        Some(number) => {
            let n: f64 = number.trim().parse().ok()?;
            let scaled = (n * f64::from(per)).round();
            (scaled > 0.0 && scaled <= f64::from(u32::MAX)).then_some(scaled as u32)
        }
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn described() -> Value {
        json!({"taskDefinition": {
            "family": "files",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:111111111111:task-definition/files:4",
            "executionRoleArn": "arn:aws:iam::111111111111:role/exec",
            "cpu": "0.5 vCPU",
            "memory": "1 GB",
            "volumes": [{"name": "data", "configuredAtLaunch": true}],
            "containerDefinitions": [
                {"name": "sidecar", "image": "x", "essential": false},
                {
                    "name": "files",
                    "image": "localhost/berth-serve:1",
                    "command": ["serve"],
                    "environment": [{"name": "STORAGE_PATH", "value": "/data"}],
                    "secrets": [{"name": "BERTH_TOKEN", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:t"}],
                    "portMappings": [{"containerPort": 5000, "protocol": "tcp"}],
                    "healthCheck": {"command": ["CMD", "true"], "interval": 10, "retries": 2},
                    "mountPoints": [{"sourceVolume": "data", "containerPath": "/srv/data", "readOnly": false}],
                    "stopTimeout": 20,
                    "user": "10001:10001",
                    "logConfiguration": {"logDriver": "awslogs"}
                }
            ]
        }})
    }

    #[test]
    fn a_described_task_definition_becomes_the_service_and_what_is_not_honoured_is_named() {
        let mut s = ServiceConfig::default();
        s.secrets.insert("BERTH_TOKEN".into(), "env:TOKEN".into());
        s.env.insert("EXTRA".into(), "1".into());
        let ignored = apply(&mut s, &described()).unwrap();
        assert_eq!(s.image.as_deref(), Some("localhost/berth-serve:1"));
        assert_eq!(s.command, vec!["serve"]);
        assert_eq!((s.cpu, s.memory, s.port), (512, 1024, 5000));
        assert_eq!(s.mount_path, "/srv/data");
        assert_eq!(s.stop_timeout, Duration::from_secs(20));
        assert_eq!(s.user.as_deref(), Some("10001:10001"));
        assert_eq!(s.env.get("STORAGE_PATH").map(String::as_str), Some("/data"));
        assert_eq!(s.env.get("EXTRA").map(String::as_str), Some("1"), "berth.toml adds variables");
        assert_eq!(s.secrets["BERTH_TOKEN"], "env:TOKEN", "berth.toml overrides a secret by name");
        let h = &s.health_check;
        assert_eq!(h.command.as_deref(), Some(&["CMD".to_owned(), "true".to_owned()][..]));
        assert_eq!((h.interval, h.timeout, h.retries), (Duration::from_secs(10), Duration::from_secs(5), 2));
        assert_eq!(
            ignored,
            vec![
                "executionRoleArn".to_owned(),
                "containerDefinitions[0] (sidecar: berth up runs the essential container only)".to_owned(),
                "containerDefinitions[1].logConfiguration".to_owned(),
            ]
        );
    }

    #[test]
    fn a_task_definition_without_its_launch_volume_or_image_is_one_clear_error() {
        let mut bare = described();
        bare["taskDefinition"]["volumes"] = json!([]);
        let err = apply(&mut ServiceConfig::default(), &bare).unwrap_err().to_string();
        assert!(err.contains("configuredAtLaunch"), "{err}");
        let mut no_image = described();
        no_image["taskDefinition"]["containerDefinitions"][1]["image"] = Value::Null;
        let err = apply(&mut ServiceConfig::default(), &no_image).unwrap_err().to_string();
        assert!(err.contains("no image"), "{err}");
        let err = apply(&mut ServiceConfig::default(), &json!({"family": "x"})).unwrap_err().to_string();
        assert!(err.contains("containerDefinitions"), "{err}");
        let mut odd = described();
        odd["taskDefinition"]["cpu"] = json!("lots");
        assert!(apply(&mut ServiceConfig::default(), &odd).unwrap_err().to_string().contains("cpu"));
    }

    #[test]
    fn cpu_and_memory_take_ecs_notations() {
        assert_eq!(units(&json!(256), "vcpu", 1024), Some(256));
        assert_eq!(units(&json!("1024"), "vcpu", 1024), Some(1024));
        assert_eq!(units(&json!("0.25 vCPU"), "vcpu", 1024), Some(256));
        assert_eq!(units(&json!("2 GB"), "gb", 1024), Some(2048));
        assert_eq!(units(&json!("2GB"), "gb", 1024), Some(2048));
        assert_eq!(units(&json!("-1 GB"), "gb", 1024), None);
        assert_eq!(units(&json!("many"), "gb", 1024), None);
    }
}
