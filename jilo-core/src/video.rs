//! What a user asks a provider to make, and what a provider offers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The shortest prompt the Studio accepts, in characters (the seed's rule).
pub const MIN_PROMPT_CHARS: usize = 10;
/// The longest prompt the Studio accepts, in characters (the seed's rule).
pub const MAX_PROMPT_CHARS: usize = 500;

/// The frame shape of a video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AspectRatio {
    /// 16:9, landscape.
    #[serde(rename = "16:9")]
    Landscape,
    /// 9:16, portrait: TikTok, Shorts, Reels.
    #[serde(rename = "9:16")]
    Portrait,
    /// 1:1.
    #[serde(rename = "1:1")]
    Square,
}

impl AspectRatio {
    /// The ratio as providers spell it: `16:9`, `9:16`, `1:1`.
    pub fn as_str(self) -> &'static str {
        match self {
            AspectRatio::Landscape => "16:9",
            AspectRatio::Portrait => "9:16",
            AspectRatio::Square => "1:1",
        }
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AspectRatio {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "16:9" => Ok(AspectRatio::Landscape),
            "9:16" => Ok(AspectRatio::Portrait),
            "1:1" => Ok(AspectRatio::Square),
            other => Err(Error::invalid(
                "aspect_ratio",
                format!("`{other}` is not one of 16:9, 9:16, 1:1"),
            )),
        }
    }
}

/// Optional style controls of the seed's "advanced options". Providers that cannot honour a
/// field fold it into the prompt or ignore it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StyleOptions {
    /// A visual style, e.g. `cinematic`.
    pub style: Option<String>,
    /// A colour tone, e.g. `blue and purple`.
    pub tone: Option<String>,
    /// Pacing, e.g. `fast cuts`.
    pub pacing: Option<String>,
}

/// A user's request for one video.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoRequest {
    /// What to show, 10 to 500 characters.
    pub prompt: String,
    /// jilo's model id, as a provider reports it in [`ModelSpec::id`] (e.g. `minimax-video-01`).
    pub model: String,
    /// Length in seconds; must be one the model offers.
    pub duration_secs: u32,
    /// Frame shape; must be one the model offers.
    pub aspect_ratio: AspectRatio,
    /// Optional style controls.
    #[serde(default)]
    pub style: StyleOptions,
}

impl VideoRequest {
    /// A request with the default style and a portrait frame.
    pub fn new(prompt: impl Into<String>, model: impl Into<String>, duration_secs: u32) -> Self {
        Self {
            prompt: prompt.into(),
            model: model.into(),
            duration_secs,
            aspect_ratio: AspectRatio::Portrait,
            style: StyleOptions::default(),
        }
    }

    /// The same request with another aspect ratio.
    pub fn with_aspect_ratio(mut self, ratio: AspectRatio) -> Self {
        self.aspect_ratio = ratio;
        self
    }

    /// Checks the prompt length (10 to 500 characters, counted as Unicode scalar values after
    /// trimming), so Chinese and English prompts are measured alike.
    pub fn validate_prompt(&self) -> Result<(), Error> {
        let chars = self.prompt.trim().chars().count();
        if chars < MIN_PROMPT_CHARS {
            return Err(Error::invalid(
                "prompt",
                format!("{chars} characters; at least {MIN_PROMPT_CHARS} are needed"),
            ));
        }
        if chars > MAX_PROMPT_CHARS {
            return Err(Error::invalid(
                "prompt",
                format!("{chars} characters; at most {MAX_PROMPT_CHARS} are allowed"),
            ));
        }
        Ok(())
    }
}

/// The price of one duration of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Video length in seconds.
    pub duration_secs: u32,
    /// What the user pays, in credits.
    pub credits: i64,
    /// What the provider charges, in its currency's minor units (cents, fen).
    pub provider_cost_minor: i64,
    /// ISO 4217 code of the provider's currency, e.g. `USD`, `CNY`.
    pub currency: String,
}

/// What a provider charges for one video, in its currency's minor units.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderCost {
    /// Minor units (cents, fen).
    pub minor: i64,
    /// ISO 4217 code.
    pub currency: String,
}

/// One model a provider offers: its durations, aspect ratios and prices. Capabilities are data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// jilo's id for the model, what [`VideoRequest::model`] names. Two providers offering the
    /// same model use the same id, which is what makes failover possible.
    pub id: String,
    /// The provider's own endpoint or model name, e.g. `fal-ai/minimax/video-01`.
    pub provider_model: String,
    /// Offered lengths in seconds.
    pub durations: Vec<u32>,
    /// Offered frame shapes.
    pub aspect_ratios: Vec<AspectRatio>,
    /// A price for each offered duration.
    pub prices: Vec<ModelPrice>,
}

impl ModelSpec {
    /// Whether the model offers this duration and ratio.
    pub fn offers(&self, duration_secs: u32, ratio: AspectRatio) -> bool {
        self.durations.contains(&duration_secs) && self.aspect_ratios.contains(&ratio)
    }

    /// The price of one duration, if listed.
    pub fn price(&self, duration_secs: u32) -> Option<&ModelPrice> {
        self.prices
            .iter()
            .find(|p| p.duration_secs == duration_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_bounds_count_characters_not_bytes() {
        let ok = VideoRequest::new("一只猫在月球上跳舞的视频", "m", 5);
        assert!(ok.validate_prompt().is_ok());
        let short = VideoRequest::new("  short   ", "m", 5);
        let err = short.validate_prompt().unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "prompt"));
        let long = VideoRequest::new("a".repeat(501), "m", 5);
        assert!(long.validate_prompt().is_err());
        let edge = VideoRequest::new("字".repeat(500), "m", 5);
        assert!(edge.validate_prompt().is_ok());
    }

    #[test]
    fn aspect_ratio_round_trips() {
        for r in [
            AspectRatio::Landscape,
            AspectRatio::Portrait,
            AspectRatio::Square,
        ] {
            assert_eq!(r.as_str().parse::<AspectRatio>().unwrap(), r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert!("4:3".parse::<AspectRatio>().is_err());
    }
}
