//! What goes over the wire to fal's queue and back: the models offered, each model's input,
//! the `owner/app` its status URLs use, and the video a finished request names.

use jilo_core::{AspectRatio, ModelPrice, ModelSpec, ProviderVideo, VideoRequest};
use serde_json::{json, Value};

/// jilo's id for minimax video-01 (6 s, fixed).
pub const MINIMAX_VIDEO_01: &str = "minimax-video-01";
/// jilo's id for Kling 1.6 standard text-to-video (5 or 10 s; 16:9, 9:16, 1:1).
pub const KLING_T2V: &str = "kling-t2v";
/// jilo's id for Veo 3 (4, 6 or 8 s; 16:9, 9:16; with audio).
pub const VEO3: &str = "veo3";

/// The models offered, with what fal charges (USD cents) and a default credit price a host's
/// [`jilo_core::Pricing`] overrides.
pub fn catalog() -> Vec<ModelSpec> {
    let price = |duration_secs, credits, cents| ModelPrice {
        duration_secs,
        credits,
        provider_cost_minor: cents,
        currency: "USD".to_owned(),
    };
    vec![
        ModelSpec {
            id: MINIMAX_VIDEO_01.to_owned(),
            provider_model: "fal-ai/minimax/video-01".to_owned(),
            durations: vec![6],
            aspect_ratios: vec![AspectRatio::Landscape],
            prices: vec![price(6, 15, 50)],
        },
        ModelSpec {
            id: KLING_T2V.to_owned(),
            provider_model: "fal-ai/kling-video/v1.6/standard/text-to-video".to_owned(),
            durations: vec![5, 10],
            aspect_ratios: vec![
                AspectRatio::Landscape,
                AspectRatio::Portrait,
                AspectRatio::Square,
            ],
            // $0.045 a second.
            prices: vec![price(5, 15, 23), price(10, 30, 45)],
        },
        ModelSpec {
            id: VEO3.to_owned(),
            provider_model: "fal-ai/veo3".to_owned(),
            durations: vec![4, 6, 8],
            aspect_ratios: vec![AspectRatio::Landscape, AspectRatio::Portrait],
            // $0.40 a second with audio.
            prices: vec![price(4, 30, 160), price(6, 45, 240), price(8, 60, 320)],
        },
    ]
}

/// The prompt with the request's style options folded in (no model here takes them).
fn full_prompt(r: &VideoRequest) -> String {
    let mut prompt = r.prompt.trim().to_owned();
    for (name, value) in [
        ("style", &r.style.style),
        ("tone", &r.style.tone),
        ("pacing", &r.style.pacing),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            prompt.push_str(&format!(", {name}: {}", v.trim()));
        }
    }
    prompt
}

/// The model's input for a request.
pub fn model_input(provider_model: &str, r: &VideoRequest) -> Value {
    let prompt = full_prompt(r);
    if provider_model.starts_with("fal-ai/minimax/") {
        json!({"prompt": prompt, "prompt_optimizer": true})
    } else if provider_model.starts_with("fal-ai/veo3") {
        json!({
            "prompt": prompt,
            "duration": format!("{}s", r.duration_secs),
            "aspect_ratio": r.aspect_ratio.as_str(),
            "generate_audio": true,
        })
    } else {
        json!({
            "prompt": prompt,
            "duration": r.duration_secs.to_string(),
            "aspect_ratio": r.aspect_ratio.as_str(),
        })
    }
}

/// `owner/app` of a model id: what status, result and cancel URLs use.
pub fn app_of(model: &str) -> String {
    let parts: Vec<&str> = model.trim_matches('/').split('/').collect();
    let keep = if matches!(parts.first(), Some(&"workflows" | &"comfy")) {
        3
    } else {
        2
    };
    parts
        .iter()
        .take(keep)
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

pub(super) fn video_of(payload: &Value) -> Option<ProviderVideo> {
    let video = &payload["video"];
    Some(ProviderVideo {
        url: video["url"].as_str()?.to_owned(),
        content_type: video["content_type"].as_str().map(str::to_owned),
        bytes: video["file_size"].as_u64(),
        headers: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_urls_use_owner_and_app() {
        assert_eq!(
            app_of("fal-ai/kling-video/v1.6/standard/text-to-video"),
            "fal-ai/kling-video"
        );
        assert_eq!(app_of("fal-ai/veo3"), "fal-ai/veo3");
        assert_eq!(app_of("workflows/me/flow/run"), "workflows/me/flow");
    }

    #[test]
    fn inputs_follow_each_model() {
        let r = VideoRequest::new("A red kite over hills", "kling-t2v", 10)
            .with_aspect_ratio(AspectRatio::Square);
        let kling = model_input("fal-ai/kling-video/v1.6/standard/text-to-video", &r);
        assert_eq!(
            kling,
            json!({"prompt": "A red kite over hills", "duration": "10", "aspect_ratio": "1:1"})
        );
        let mut v = VideoRequest::new("A red kite over hills", "veo3", 8);
        v.style.style = Some("cinematic".into());
        let veo = model_input("fal-ai/veo3", &v);
        assert_eq!(veo["duration"], "8s");
        assert_eq!(veo["prompt"], "A red kite over hills, style: cinematic");
        let minimax = model_input("fal-ai/minimax/video-01", &r);
        assert!(minimax.get("duration").is_none());
    }
}
