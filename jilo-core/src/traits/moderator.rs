use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A moderator's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModerationVerdict {
    /// The terms that made it refuse; empty when allowed.
    pub flagged_terms: Vec<String>,
}

impl ModerationVerdict {
    /// Whether the text may be used.
    pub fn is_allowed(&self) -> bool {
        self.flagged_terms.is_empty()
    }
}

/// Checks a prompt before anything is charged.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait Moderator: Send + Sync {
    /// Checks a text.
    async fn check(&self, text: &str) -> Result<ModerationVerdict>;
}
