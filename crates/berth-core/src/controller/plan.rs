//! The executor of service plans ([`crate::plan`]): the same
//! [`Controller::execute`] that carries out a claim's decision runs each
//! step, and each done step logs the event its reason makes.

use super::*;
use crate::plan::Plan;

/// What carrying out a plan did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// The claims whose writes (creates or updates) went through, in order.
    pub written: Vec<ClaimName>,
    /// Compare-and-swaps lost to other writers.
    pub lost: usize,
}

impl<R: Runtime, V: Volumes, L: Ledger> Controller<R, V, L> {
    /// Carries out `plan` in order. A lost compare-and-swap is no error:
    /// on a service record it ends the plan, on a claim it skips that
    /// claim's write (see [`crate::plan`]); both are counted.
    pub async fn carry_out(&self, plan: Plan) -> Result<Carried, ControllerError> {
        let mut carried = Carried::default();
        for step in plan.steps {
            let event = step.why.event(self.now(), step.claim.as_ref(), &step.action);
            let writes_claim = matches!(step.action, Action::WriteClaim(_) | Action::CreateClaim(_));
            let ends_plan = matches!(step.action, Action::WriteService { .. });
            match self.execute(step.claim.as_ref(), step.action).await {
                Ok(()) => {}
                Err(ControllerError::Ledger(e)) if e.is_conflict() => {
                    carried.lost += 1;
                    match ends_plan {
                        true => break,
                        false => continue,
                    }
                }
                Err(e) => return Err(e),
            }
            if let (true, Some(claim)) = (writes_claim, &step.claim) {
                carried.written.push(claim.clone());
            }
            if let Some(event) = event {
                self.log(event).await;
            }
        }
        Ok(carried)
    }
}
