//! The resolver configuration.

use super::{work::Work, Op, PlanError};

/// Phase 13: the resolver configuration, when it differs.
pub(super) fn plan(w: &mut Work) -> Result<(), PlanError> {
    if let Some(config) = &w.intent.dns {
        if w.k.dns() != Some(config) {
            w.push(Op::WriteDns {
                config: config.clone(),
            })?;
        }
    }
    Ok(())
}
