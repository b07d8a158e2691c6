//! Compile errors: each names the field path (in `intent.` or `inventory.`,
//! or the switch-side documents) and the offending value.

use std::fmt;

/// One reason the intent cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentError {
    /// Field path, e.g. `inventory.nics[1].lldp` or `intent.networks[0].vlan`.
    pub path: String,
    /// The offending value, rendered.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl fmt::Display for IntentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (value: {})", self.path, self.reason, self.value)
    }
}

/// Every problem found; nothing is compiled when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IntentErrors(pub Vec<IntentError>);

impl fmt::Display for IntentErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} intent error(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Collects errors.
#[derive(Default)]
pub(crate) struct Errs(pub Vec<IntentError>);

impl Errs {
    pub fn push(
        &mut self,
        path: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) {
        self.0.push(IntentError {
            path: path.into(),
            value: value.to_string(),
            reason: reason.into(),
        });
    }

    /// `Err` with everything collected, or `Ok(v)`.
    pub fn finish<T>(self, v: T) -> Result<T, IntentErrors> {
        if self.0.is_empty() {
            Ok(v)
        } else {
            Err(IntentErrors(self.0))
        }
    }

    /// `Err` now if anything was collected (later stages need clean input).
    pub fn check(&mut self) -> Result<(), IntentErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(IntentErrors(std::mem::take(&mut self.0)))
        }
    }
}
