//! The runtime contract: behaviour every `Runtime` adapter must show.
//!
//! As the ledger's ([`crate::ledger::contract`]): each check is a public
//! async function that drives the runtime through one behaviour and panics
//! naming the broken promise; [`run_all`] runs them all. A runtime is
//! given with a [`Launches`]: how to make a request it can start (a task
//! that keeps running, on a volume as the adapter takes it) and how to
//! wait a moment between two looks (core has no timer; a stop takes the
//! runtime some time).

use std::future::Future;

use crate::claim::{ClaimName, Generation};
use crate::event::{StopCode, TaskStatus};
use crate::task::{LaunchRequest, Runtime, TaskArn, TaskInfo};

/// How many times a check looks before it gives up on a change.
const LOOKS: usize = 400;

/// What the checks need besides the runtime.
pub struct Launches<Q, P> {
    /// A request for a task of `claim` at `generation` that runs until it
    /// is stopped, with its own client token.
    pub request: Q,
    /// Waits a moment (a few milliseconds) between two looks.
    pub pause: P,
}

/// The two things a check asks of its [`Launches`].
pub trait Harness {
    fn request(&self, claim: &ClaimName, generation: Generation) -> LaunchRequest;
    fn pause(&self) -> impl Future<Output = ()>;
}

impl<Q, P, F> Harness for Launches<Q, P>
where
    Q: Fn(&ClaimName, Generation) -> LaunchRequest,
    P: Fn() -> F,
    F: Future<Output = ()>,
{
    fn request(&self, claim: &ClaimName, generation: Generation) -> LaunchRequest {
        (self.request)(claim, generation)
    }

    fn pause(&self) -> impl Future<Output = ()> {
        (self.pause)()
    }
}

/// Runs every check on `runtime`; each uses claims of its own.
pub async fn run_all<R: Runtime>(runtime: &R, launches: &impl Harness) {
    a_launch_runs_the_requests_task(runtime, launches).await;
    one_client_token_starts_one_task(runtime, launches).await;
    a_stop_ends_in_stopped_with_its_code(runtime, launches).await;
    stopping_again_or_an_unknown_task_succeeds(runtime, launches).await;
}

fn claim(name: &str) -> ClaimName {
    ClaimName::parse(name).expect("a contract claim name")
}

async fn find<R: Runtime>(runtime: &R, arn: &TaskArn) -> Option<TaskInfo> {
    runtime.tasks().await.expect("list tasks").into_iter().find(|t| &t.arn == arn)
}

/// Looks until `done` holds for the task, or panics with `what`.
async fn until<R: Runtime>(
    runtime: &R,
    launches: &impl Harness,
    arn: &TaskArn,
    what: &str,
    done: impl Fn(&TaskInfo) -> bool,
) -> TaskInfo {
    for _ in 0..LOOKS {
        if let Some(t) = find(runtime, arn).await.filter(|t| done(t)) {
            return t;
        }
        launches.pause().await;
    }
    panic!("{what}: task {arn} is {:?}", find(runtime, arn).await);
}

/// A launch returns the request's task, not stopped, and the runtime lists it.
pub async fn a_launch_runs_the_requests_task<R: Runtime>(runtime: &R, launches: &impl Harness) {
    let request = launches.request(&claim("contract-1"), Generation(3));
    let task = runtime.run_task(&request).await.expect("run a task");
    assert_eq!(task.claim.as_ref(), Some(&request.claim), "a task names its claim");
    assert_eq!(task.generation, Some(Generation(3)), "a task names its generation");
    assert_eq!(task.service.as_deref(), Some(request.service.as_str()), "a task names its service");
    assert!(!task.is_stopped(), "a task that could start is not stopped: {task:?}");
    let listed = find(runtime, &task.arn).await.expect("the runtime lists a task it started");
    assert_eq!(listed.claim, task.claim);
    until(runtime, launches, &task.arn, "a started task reaches RUNNING", |t| t.last_status == TaskStatus::Running)
        .await;
    runtime.stop_task(&task.arn, StopCode::UserInitiated, "contract over").await.expect("stop");
}

/// Launching twice with one client token starts one task (rule 3: a
/// handoff retried after a crash must not start a second task).
pub async fn one_client_token_starts_one_task<R: Runtime>(runtime: &R, launches: &impl Harness) {
    let request = launches.request(&claim("contract-2"), Generation(1));
    let first = runtime.run_task(&request).await.expect("run a task");
    let again = runtime.run_task(&request).await.expect("run it again");
    assert_eq!(first.arn, again.arn, "one client token, one task");
    let of_claim = runtime.tasks().await.expect("list").into_iter().filter(|t| t.claim == first.claim).count();
    assert_eq!(of_claim, 1, "one client token, one task");
    runtime.stop_task(&first.arn, StopCode::UserInitiated, "contract over").await.expect("stop");
}

/// A stop ends in STOPPED, desired STOPPED, with a stop time, and with the
/// code it was given or `UserInitiated` (what ECS reports for every
/// StopTask: berth keeps its own reason in the claim's stop order); a
/// stopped task has no usage reading.
pub async fn a_stop_ends_in_stopped_with_its_code<R: Runtime>(runtime: &R, launches: &impl Harness) {
    let request = launches.request(&claim("contract-3"), Generation(1));
    let task = runtime.run_task(&request).await.expect("run a task");
    until(runtime, launches, &task.arn, "a started task reaches RUNNING", |t| t.last_status == TaskStatus::Running)
        .await;
    runtime.stop_task(&task.arn, StopCode::SpotInterruption, "contract: spot").await.expect("stop a task");
    let stopped = until(runtime, launches, &task.arn, "a stopped task reaches STOPPED", TaskInfo::is_stopped).await;
    assert_eq!(stopped.desired_status, TaskStatus::Stopped);
    assert!(
        matches!(stopped.stop_code, Some(StopCode::SpotInterruption | StopCode::UserInitiated)),
        "the stop code given (or a user's stop) is the one reported: {:?}",
        stopped.stop_code
    );
    assert!(stopped.stopped_at.is_some(), "a stopped task says when");
    assert_eq!(runtime.usage(&task.arn).await.expect("usage"), None, "a stopped task uses nothing");
}

/// Stopping a stopped task, or one the runtime never knew, succeeds.
pub async fn stopping_again_or_an_unknown_task_succeeds<R: Runtime>(runtime: &R, launches: &impl Harness) {
    let request = launches.request(&claim("contract-4"), Generation(1));
    let task = runtime.run_task(&request).await.expect("run a task");
    runtime.stop_task(&task.arn, StopCode::UserInitiated, "first").await.expect("stop");
    let stopped = until(runtime, launches, &task.arn, "a stopped task reaches STOPPED", TaskInfo::is_stopped).await;
    runtime.stop_task(&task.arn, StopCode::SpotInterruption, "again").await.expect("stopping a stopped task succeeds");
    let after = find(runtime, &task.arn).await.expect("still listed");
    assert_eq!(after.stop_code, stopped.stop_code, "a second stop changes nothing");
    let unknown = TaskArn(format!("{}-unknown", task.arn));
    runtime.stop_task(&unknown, StopCode::UserInitiated, "unknown").await.expect("stopping an unknown task succeeds");
}
