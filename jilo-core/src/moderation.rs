//! A word-list [`Moderator`] that names the terms it finds.

use async_trait::async_trait;

use crate::error::Result;
use crate::traits::{ModerationVerdict, Moderator};

/// Refuses text containing any listed term, matched case-insensitively as a substring (so it
/// works for Chinese, which has no spaces between words). Reports each term once, in list order.
#[derive(Clone, Debug, Default)]
pub struct WordListModerator {
    terms: Vec<(String, String)>,
}

impl WordListModerator {
    /// A moderator for these terms; blank terms are dropped.
    pub fn new<I, S>(terms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let terms = terms
            .into_iter()
            .map(Into::into)
            .filter(|t| !t.trim().is_empty())
            .map(|t| (t.to_lowercase(), t))
            .collect();
        Self { terms }
    }

    /// The terms found in `text`.
    pub fn find(&self, text: &str) -> Vec<String> {
        let lower = text.to_lowercase();
        let mut found: Vec<String> = Vec::new();
        for (needle, original) in &self.terms {
            if lower.contains(needle.as_str()) && !found.contains(original) {
                found.push(original.clone());
            }
        }
        found
    }
}

#[async_trait]
impl Moderator for WordListModerator {
    async fn check(&self, text: &str) -> Result<ModerationVerdict> {
        Ok(ModerationVerdict {
            flagged_terms: self.find(text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_every_term_once_whatever_the_case() {
        let m = WordListModerator::new(["Gore", "暴力", "", "bomb"]);
        let v = m.check("GORE and more gore, 暴力 scenes").await.unwrap();
        assert_eq!(v.flagged_terms, vec!["Gore".to_owned(), "暴力".to_owned()]);
        assert!(!v.is_allowed());
        assert!(m.check("a calm lake at dawn").await.unwrap().is_allowed());
    }
}
