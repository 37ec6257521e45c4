//! Gemini's `generateContent`, as `specs/gemini.md` describes it.
//!
//! `POST /{v1beta|v1}/models/{model}:generateContent` with the key in `x-goog-api-key` (or
//! `?key=`). With `generationConfig.responseJsonSchema` (JSON Schema) or `responseSchema`
//! (Gemini's OpenAPI subset, upper-case types) and `responseMimeType: application/json`, the
//! answer's text is JSON that satisfies the schema (types, required and optional properties,
//! `enum`, `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`), made from the
//! request's own words and stable for a seed. Blocked prompts answer `promptFeedback.blockReason`;
//! a 429 carries `google.rpc.RetryInfo`; a bad key is 400 `API_KEY_INVALID`; a retired model 404.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::server::{self, body, header, query, reply, Answer, Req};
use crate::{Service, Switches};

/// The key the simulator accepts (`GEMINI_API_KEY`).
pub const KEY: &str = "jilo-sim-gemini-key";
const SERVICE: Service = Service::Gemini;
const RETIRED: [&str; 3] = [
    "gemini-2.0-flash",
    "gemini-2.0-flash-001",
    "gemini-2.0-flash-lite",
];

const NOUNS: [&str; 16] = [
    "paper crane",
    "city street",
    "river",
    "lantern",
    "desk",
    "robot",
    "rooftop",
    "garden",
    "night market",
    "window",
    "mirror",
    "studio",
    "coffee cup",
    "wave",
    "ink drop",
    "sketchbook",
];
const ADJECTIVES: [&str; 10] = [
    "glowing", "neon", "soft", "warm", "slow", "misty", "golden", "tiny", "quiet", "bright",
];
const CAMERAS: [&str; 6] = [
    "macro lens",
    "slow dolly-in",
    "handheld tracking shot",
    "drone shot",
    "close-up",
    "top-down shot",
];
const LIGHTS: [&str; 5] = [
    "soft morning light",
    "neon night light",
    "golden-hour light",
    "moody rain light",
    "bright studio light",
];
const FACTORS: [&str; 10] = [
    "instant payoff",
    "seamless loop",
    "text hook in the first frame",
    "fast cuts",
    "before and after reveal",
    "relatable problem",
    "trending sound",
    "clear result on screen",
    "curiosity gap",
    "satisfying ending",
];
const TITLES: [&str; 6] = [
    "This {T} Trick Changed Everything",
    "{T} in 10 Seconds",
    "I Tried {T} So You Don't Have To",
    "Wait for the {N} at the End",
    "The {T} Nobody Talks About",
    "{T}: Day 1 vs Day 30",
];
/// Words of a request that are instructions, not its subject.
const STOP: [&str; 95] = [
    "this",
    "that",
    "with",
    "from",
    "your",
    "what",
    "which",
    "their",
    "there",
    "these",
    "those",
    "about",
    "into",
    "over",
    "they",
    "them",
    "have",
    "will",
    "would",
    "should",
    "could",
    "each",
    "answer",
    "json",
    "schema",
    "matching",
    "explain",
    "write",
    "give",
    "make",
    "describe",
    "description",
    "sentence",
    "sentences",
    "short",
    "video",
    "videos",
    "title",
    "titles",
    "hook",
    "factors",
    "score",
    "views",
    "likes",
    "comments",
    "shares",
    "stats",
    "prompt",
    "youtube",
    "tiktok",
    "instagram",
    "reels",
    "shorts",
    "creator",
    "creators",
    "seconds",
    "strategist",
    "keywords",
    "english",
    "only",
    "went",
    "viral",
    "after",
    "problem",
    "made",
    "metadata",
    "characters",
    "most",
    "generated",
    "second",
    "recommendation",
    "trending",
    "inspired",
    "invent",
    "wording",
    "copy",
    "structure",
    "pacing",
    "options",
    "tags",
    "mood",
    "visuals",
    "camera",
    "model",
    "vertical",
    "work",
    "keep",
    "must",
    "least",
    "words",
    "success",
    "none",
    "option",
    "subjects",
    "makes",
];

/// What the simulator holds.
#[derive(Debug, Default)]
pub struct State {
    /// Answers given (200s).
    pub answered: u32,
    /// The `required` list of each schema asked for, in order.
    pub schemas_seen: Vec<Vec<String>>,
    /// Each rule a client broke.
    pub violations: Vec<String>,
    /// Every request line.
    pub requests: Vec<String>,
}

/// The Gemini simulator.
#[derive(Clone, Debug)]
pub struct GeminiSim {
    /// The base URL (`GEMINI_API_URL`).
    pub url: String,
    /// The simulator's state.
    pub state: Arc<Mutex<State>>,
    switches: Switches,
    seed: u64,
    task: Arc<crate::Task>,
}

fn google_error(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

impl server::Simulator for GeminiSim {
    async fn answer(self, req: Req) -> Answer {
        self.handle(req).await
    }

    fn with_task(mut self, task: Arc<crate::Task>) -> Self {
        self.task = task;
        self
    }
}

impl GeminiSim {
    /// Starts on a free loopback port with its own switches.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Switches::default(),
            7,
        )
        .await
    }

    /// Starts on `addr`, following `switches`; `seed` decides the made-up words.
    pub async fn start_on(
        addr: SocketAddr,
        switches: Switches,
        seed: u64,
    ) -> std::io::Result<Self> {
        server::launch(addr, |url| GeminiSim {
            url,
            state: Arc::new(Mutex::new(State::default())),
            switches,
            seed,
            task: Arc::default(),
        })
        .await
    }

    /// The fault switches this simulator follows.
    pub fn switches(&self) -> &Switches {
        &self.switches
    }

    /// The state, for a test to read.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn violation(&self, what: String) {
        tracing::warn!(target: "jilo_sim::gemini", "{what}");
        self.lock().violations.push(what);
    }

    async fn handle(&self, req: Req) -> Answer {
        self.lock()
            .requests
            .push(server::line(&req).replace(KEY, "…"));
        let path = req.uri().path().to_owned();
        let Some((model, method)) = path
            .strip_prefix("/v1beta/models/")
            .or_else(|| path.strip_prefix("/v1/models/"))
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(m, x)| (m.trim_start_matches("models/").to_owned(), x.to_owned()))
        else {
            return reply(404, google_error(404, "NOT_FOUND", "Not Found", json!([])));
        };
        if req.method() != "POST" || method != "generateContent" {
            return reply(404, google_error(404, "NOT_FOUND", "Not Found", json!([])));
        }
        let faults = self.switches.get(SERVICE);
        if faults.down || self.switches.take(SERVICE, |f| &mut f.server_errors) {
            return reply(
                503,
                google_error(
                    503,
                    "UNAVAILABLE",
                    "The model is overloaded. Please try again later.",
                    json!([]),
                ),
            );
        }
        let key = header(&req, "x-goog-api-key").or_else(|| query(&req).get("key").cloned());
        let Some(key) = key else {
            return reply(403, google_error(403, "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                json!([])));
        };
        if faults.key_rejected || key != KEY {
            if !faults.key_rejected {
                self.violation("a call with a key the simulator did not issue".into());
            }
            return reply(
                400,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "API key not valid. Please pass a valid API key.",
                    json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
                ),
            );
        }
        if let Some(secs) = faults.rate_limited {
            return reply(
                429,
                google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "You exceeded your current quota, please check your plan and billing details.",
                    json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}]),
                ),
            );
        }
        if faults.quota_exhausted {
            // The daily quota: no RetryInfo, nothing to wait for but the next day.
            return reply(
                429,
                google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "You exceeded your current quota, please check your plan and billing details.",
                    json!([{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel"}]}]),
                ),
            );
        }
        if RETIRED.contains(&model.as_str()) {
            return reply(404, google_error(404, "NOT_FOUND",
                &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."),
                json!([])));
        }
        let raw = body(req).await;
        let Ok(request) = serde_json::from_slice::<Value>(&raw) else {
            self.violation("the body is not JSON".into());
            return reply(
                400,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid JSON payload received.",
                    json!([]),
                ),
            );
        };
        self.generate(&model, &request, faults.block_prompts)
    }

    fn generate(&self, model: &str, request: &Value, blocked: bool) -> Answer {
        let text: String = request["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["parts"].as_array().into_iter().flatten())
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let parts = request["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["parts"].as_array().into_iter().flatten())
            .count();
        if parts == 0 {
            self.violation("generateContent without contents".into());
            return reply(
                400,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "* GenerateContentRequest.contents: contents is not specified\n",
                    json!([]),
                ),
            );
        }
        // The API takes camelCase and snake_case names alike.
        let field = |v: &'_ Value, camel: &str, snake: &str| -> Value {
            v.get(camel)
                .or_else(|| v.get(snake))
                .cloned()
                .unwrap_or(Value::Null)
        };
        let config = field(request, "generationConfig", "generation_config");
        let (json_schema, api_schema) = (
            field(&config, "responseJsonSchema", "response_json_schema"),
            field(&config, "responseSchema", "response_schema"),
        );
        let mime = field(&config, "responseMimeType", "response_mime_type");
        if !json_schema.is_null() && !api_schema.is_null() {
            self.violation("both responseSchema and responseJsonSchema".into());
            return reply(
                400,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "responseSchema and responseJsonSchema cannot both be set.",
                    json!([]),
                ),
            );
        }
        let schema = if json_schema.is_null() {
            &api_schema
        } else {
            &json_schema
        };
        let wants_json = mime.as_str() == Some("application/json");
        if !schema.is_null() && !wants_json {
            self.violation("a response schema without responseMimeType application/json".into());
            return reply(
                400,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "response_mime_type must be application/json when a response schema is set.",
                    json!([]),
                ),
            );
        }
        let tokens = (text.chars().count() / 4) as u64;
        if blocked {
            return reply(
                200,
                json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]},
                "usageMetadata": {"promptTokenCount": tokens, "totalTokenCount": tokens},
                "modelVersion": model, "responseId": server::random("sim-")}),
            );
        }
        let mut words = Words::new(self.seed, &text);
        let answer = if schema.is_null() && wants_json {
            json!({ "text": words.prompt_like() })
        } else if schema.is_null() {
            Value::String(words.prompt_like())
        } else {
            let required: Vec<String> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            self.lock().schemas_seen.push(required);
            match make(schema, "", &mut words, 0) {
                Ok(v) => v,
                Err(why) => {
                    return reply(400, google_error(400, "INVALID_ARGUMENT", &why, json!([])))
                }
            }
        };
        let out = match &answer {
            Value::String(s) if schema.is_null() => s.clone(),
            v => v.to_string(),
        };
        let produced = (out.chars().count() / 4) as u64;
        self.lock().answered += 1;
        reply(
            200,
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": out}]},
                "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": tokens, "candidatesTokenCount": produced,
                "totalTokenCount": tokens + produced},
            "modelVersion": model, "responseId": server::random("sim-")}),
        )
    }
}

/// Words for made-up answers: the request's own subject (its most frequent words that are not
/// instructions) and a small bank of visual words, in an order fixed by the seed and the text.
struct Words {
    topics: Vec<String>,
    state: u64,
}

impl Words {
    fn new(seed: u64, text: &str) -> Self {
        let digest = Sha256::digest(format!("{seed}\n{text}").as_bytes());
        let mut state = 0u64;
        for b in &digest[..8] {
            state = (state << 8) | u64::from(*b);
        }
        // The subject sits after a label (`Title: …`, `keywords: …`) when the request has one.
        let labelled: String = text
            .lines()
            .filter_map(|line| {
                let lower = line.to_lowercase();
                ["title:", "keywords:", "prompt:", "topic:", "subject:"]
                    .iter()
                    .find_map(|label| {
                        lower
                            .find(label)
                            .and_then(|i| line.get(i + label.len()..))
                            .map(str::to_owned)
                    })
            })
            .collect::<Vec<_>>()
            .join(" ");
        let source = if labelled.trim().is_empty() {
            text
        } else {
            labelled.as_str()
        };
        let mut counts: Vec<(String, usize)> = Vec::new();
        for w in source
            .split(|c: char| !c.is_alphanumeric())
            .map(str::to_lowercase)
            .filter(|w| (4..=14).contains(&w.chars().count()))
            .filter(|w| !w.chars().all(|c| c.is_ascii_digit()) && !STOP.contains(&w.as_str()))
        {
            match counts.iter_mut().find(|(x, _)| *x == w) {
                Some((_, n)) => *n += 1,
                None => counts.push((w, 1)),
            }
        }
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        let topics = counts.into_iter().take(6).map(|(w, _)| w).collect();
        Self {
            topics,
            state: state | 1,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }

    /// The request's subject, or a visual word when it has none.
    fn topic(&mut self) -> String {
        if self.topics.is_empty() {
            self.pick(&NOUNS).to_owned()
        } else {
            let i = self.below(self.topics.len() as u64) as usize;
            self.topics[i].clone()
        }
    }

    fn prompt_like(&mut self) -> String {
        let (adj, noun, topic) = (self.pick(&ADJECTIVES), self.pick(&NOUNS), self.topic());
        let (camera, light) = (self.pick(&CAMERAS), self.pick(&LIGHTS));
        format!(
            "A {adj} {noun} comes alive around {topic}, {camera}, {light}, quick cuts on every \
             change, ending on the finished result in one clean frame"
        )
    }

    /// Text of `min..=max` characters in the flavour a property's name suggests.
    fn text(&mut self, name: &str, min: usize, max: usize) -> String {
        let name = name.to_ascii_lowercase();
        let mut s = if name.contains("tag") {
            match self.below(3) {
                0 => self.topic(),
                1 => self.pick(&NOUNS).to_owned(),
                _ => format!(
                    "{} {}",
                    self.topic(),
                    self.pick(&["ai", "tips", "shorts", "hack"])
                ),
            }
        } else if name.contains("title") {
            let t = title_case(&self.topic());
            let n = title_case(self.pick(&NOUNS));
            self.pick(&TITLES).replace("{T}", &t).replace("{N}", &n)
        } else if name.contains("factor") {
            self.pick(&FACTORS).to_owned()
        } else if name.contains("hook") {
            let topic = self.topic();
            match self.below(3) {
                0 => format!(
                    "The finished {topic} appears in the first second, before any explanation."
                ),
                1 => format!(
                    "A {} {} turns into {topic} in a single cut.",
                    self.pick(&ADJECTIVES),
                    self.pick(&NOUNS)
                ),
                _ => format!(
                    "It opens on the problem everyone has with {topic}, then solves it on screen."
                ),
            }
        } else if name.contains("prompt") {
            self.prompt_like()
        } else {
            let topic = self.topic();
            format!(
                "{} Made with AI. #{} #shorts",
                self.prompt_like(),
                topic.replace(' ', "")
            )
        };
        while s.chars().count() < min {
            s.push_str(&format!(
                ", {} {}",
                self.pick(&ADJECTIVES),
                self.pick(&NOUNS)
            ));
        }
        if s.chars().count() > max {
            s = s
                .chars()
                .take(max)
                .collect::<String>()
                .trim_end()
                .to_owned();
            while s.chars().count() < min {
                s.push('.');
            }
        }
        s
    }
}

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|h| h.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Schemas the simulator answers: deeper, longer or bigger ones are refused as the service
/// refuses a schema it cannot serve.
const MAX_DEPTH: usize = 24;
const MAX_ITEMS: u64 = 200;
const MAX_CHARS: usize = 20_000;

/// A bound given as a number or (in Gemini's subset, int64 as JSON) a string.
fn bound(v: &Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|f| f.is_finite())
}

fn count(v: &Value) -> Option<u64> {
    bound(v).map(|f| f.max(0.0).min(u64::MAX as f64) as u64)
}

/// A value satisfying `schema` (JSON Schema or Gemini's upper-case subset).
fn make(schema: &Value, name: &str, words: &mut Words, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the response schema nests deeper than {MAX_DEPTH} levels"
        ));
    }
    if let Some(options) = schema["enum"].as_array().filter(|o| !o.is_empty()) {
        let i = words.below(options.len() as u64) as usize;
        return Ok(options[i].clone());
    }
    if let Some(c) = schema.get("const") {
        return Ok(c.clone());
    }
    for any in ["anyOf", "oneOf"] {
        if let Some(first) = schema[any].as_array().and_then(|a| a.first()) {
            return make(first, name, words, depth + 1);
        }
    }
    let kind = match &schema["type"] {
        Value::String(t) => t.to_ascii_lowercase(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_ascii_lowercase(),
        _ if schema["properties"].is_object() => "object".to_owned(),
        _ => "string".to_owned(),
    };
    Ok(match kind.as_str() {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, s) in props {
                    out.insert(k.clone(), make(s, k, words, depth + 1)?);
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = count(&schema["minItems"]).unwrap_or(1);
            if min > MAX_ITEMS {
                return Err(format!("minItems {min} is more than {MAX_ITEMS}"));
            }
            let max = count(&schema["maxItems"])
                .unwrap_or(min + 3)
                .clamp(min, MAX_ITEMS);
            let n = min + words.below(max - min + 1);
            let singular = name.trim_end_matches('s');
            let items = (0..n)
                .map(|_| make(&schema["items"], singular, words, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Array(items)
        }
        "integer" => {
            let mut lo = bound(&schema["minimum"]).map_or(0.0, f64::ceil);
            let mut hi = bound(&schema["maximum"]).map_or(lo + 100.0, f64::floor);
            if let Some(x) = bound(&schema["exclusiveMinimum"]) {
                lo = lo.max(x.floor() + 1.0);
            }
            if let Some(x) = bound(&schema["exclusiveMaximum"]) {
                hi = hi.min(x.ceil() - 1.0);
            }
            let (lo, hi) = (lo as i128, (hi.max(lo)) as i128);
            let span = u64::try_from((hi - lo) / 2).unwrap_or(u64::MAX / 2);
            // Upper half of the range: trends are picked for being good.
            let v = hi - i128::from(words.below(span.saturating_add(1)));
            json!(i64::try_from(v).unwrap_or(i64::MAX))
        }
        "number" => {
            let lo = bound(&schema["minimum"])
                .or(bound(&schema["exclusiveMinimum"]))
                .unwrap_or(0.0);
            let hi = bound(&schema["maximum"])
                .or(bound(&schema["exclusiveMaximum"]))
                .unwrap_or(lo + 100.0)
                .max(lo);
            let f = 0.5 + (words.below(1000) as f64) / 2000.0;
            let v = lo + (hi - lo) * f;
            json!(if v.is_finite() { v } else { lo })
        }
        "boolean" => Value::Bool(words.below(2) == 1),
        "null" => Value::Null,
        _ => {
            let min = count(&schema["minLength"]).unwrap_or(1);
            let min = usize::try_from(min).unwrap_or(usize::MAX);
            if min > MAX_CHARS {
                return Err(format!("minLength {min} is more than {MAX_CHARS}"));
            }
            let max = count(&schema["maxLength"])
                .map_or(400, |m| usize::try_from(m).unwrap_or(MAX_CHARS))
                .clamp(min, MAX_CHARS);
            Value::String(words.text(name, min, max))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_values_satisfy_the_schema_bounds() {
        let schema = json!({"type": "object", "properties": {
            "titles": {"type": "array", "items": {"type": "string", "maxLength": 100}, "minItems": 3, "maxItems": 3},
            "prompt": {"type": "string", "minLength": 100, "maxLength": 300},
            "score": {"type": "INTEGER", "minimum": 1, "maximum": 10},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": "10", "maxItems": "15"}},
            "required": ["titles", "prompt", "score", "tags"]});
        for seed in 0..50 {
            let v = make(
                &schema,
                "",
                &mut Words::new(seed, "Trending: origami robots on TikTok"),
                0,
            )
            .unwrap();
            assert_eq!(v["titles"].as_array().unwrap().len(), 3);
            let prompt = v["prompt"].as_str().unwrap().chars().count();
            assert!((100..=300).contains(&prompt), "{prompt}");
            assert!((1..=10).contains(&v["score"].as_i64().unwrap()));
            let tags = v["tags"].as_array().unwrap();
            assert!((10..=15).contains(&tags.len()));
            assert!(tags
                .iter()
                .all(|t| t.as_str().unwrap().chars().count() <= 30));
        }
        let a = make(&schema, "", &mut Words::new(1, "same"), 0).unwrap();
        assert_eq!(a, make(&schema, "", &mut Words::new(1, "same"), 0).unwrap());
        // Bounds at the ends of the integers, fractions and sizes no answer could have.
        let wide = json!({"type": "integer", "minimum": -9.0e18, "maximum": 9.0e18});
        assert!(make(&wide, "n", &mut Words::new(1, "x"), 0)
            .unwrap()
            .is_i64());
        let frac = json!({"type": "number", "minimum": 0.5, "maximum": 0.9});
        let v = make(&frac, "n", &mut Words::new(1, "x"), 0)
            .unwrap()
            .as_f64()
            .unwrap();
        assert!((0.5..=0.9).contains(&v), "{v}");
        let huge = json!({"type": "array", "items": {"type": "string"}, "minItems": 1e15});
        assert!(make(&huge, "n", &mut Words::new(1, "x"), 0).is_err());
        let long = json!({"type": "string", "minLength": "99999999999"});
        assert!(make(&long, "n", &mut Words::new(1, "x"), 0).is_err());
    }
}
