//! Names the supervisor hands out: task ids and ARNs in ECS's format, event
//! ids, and a free port for each task.
//!
//! A *task id* is 32 lowercase hex digits, as ECS's; the task ARN is
//! `arn:aws:ecs:<region>:<account>:task/<cluster>/<id>`.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};

use berth_core::TaskArn;

use super::config::SupervisorConfig;

/// A new random task id.
pub(crate) fn task_id() -> String {
    random_hex(16)
}

/// A new random event id, formatted like EventBridge's (a UUID).
pub(crate) fn event_id() -> String {
    let h = random_hex(16);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn random_hex(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| fastrand::u8(..)).collect();
    hex::encode(raw)
}

pub(crate) fn task_arn(config: &SupervisorConfig, id: &str) -> TaskArn {
    TaskArn(format!("arn:aws:ecs:{}:{}:task/{}/{id}", config.region, config.account, config.cluster))
}

pub(crate) fn cluster_arn(config: &SupervisorConfig) -> String {
    format!("arn:aws:ecs:{}:{}:cluster/{}", config.region, config.account, config.cluster)
}

pub(crate) fn definition_arn(config: &SupervisorConfig, family: &str, revision: u32) -> String {
    format!("arn:aws:ecs:{}:{}:task-definition/{family}:{revision}", config.region, config.account)
}

/// The task id of an ARN of this supervisor's cluster, if it is one.
pub(crate) fn id_of<'a>(config: &SupervisorConfig, arn: &'a TaskArn) -> Option<&'a str> {
    let prefix = format!("arn:aws:ecs:{}:{}:task/{}/", config.region, config.account, config.cluster);
    let id = arn.0.strip_prefix(&prefix)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(id)
}

/// A port on `host` that is free now and not handed to a live task: bind
/// port 0, read the port the kernel picked, release it. The task binds it a
/// moment later; the kernel does not hand the same ephemeral port out again
/// that soon, and ports of live tasks are skipped.
pub(crate) fn free_port(host: IpAddr, taken: &HashSet<u16>) -> io::Result<u16> {
    for _ in 0..16 {
        let port = TcpListener::bind(SocketAddr::new(host, 0))?.local_addr()?.port();
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, "every port the kernel offered is taken by a task"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_have_ecs_shape() {
        let config = SupervisorConfig::new("berth", "/tmp/logs");
        let id = task_id();
        assert_eq!(id.len(), 32);
        let arn = task_arn(&config, &id);
        assert_eq!(arn.0, format!("arn:aws:ecs:local:000000000000:task/berth/{id}"));
        assert_eq!(arn.short(), id);
        assert_eq!(id_of(&config, &arn), Some(id.as_str()));
        assert_eq!(id_of(&config, &TaskArn("arn:aws:ecs:local:000000000000:task/berth/../x".into())), None);
        assert_eq!(definition_arn(&config, "web", 3), "arn:aws:ecs:local:000000000000:task-definition/web:3");
        assert_eq!(event_id().len(), 36);
    }
}
