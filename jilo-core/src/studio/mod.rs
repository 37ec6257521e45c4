//! The Studio: the one object a host builds, which drives every job through the state machine.
//!
//! The files of `studio/`, bottom up: `shared` (the Studio, its parts, its accessors) and
//! `follower`; `observation`, `routing`, `effects` and `driver` (performing the state
//! machine's steps); then one file per flow: `generate`, `webhook`, `worker`, `report`,
//! `subscribe`, `discover`, `publishing`, `plans`; `builder` on top. No file imports one above
//! it.

mod builder;
mod discover;
mod driver;
mod effects;
mod follower;
mod generate;
mod observation;
mod plans;
mod publishing;
mod report;
mod routing;
mod shared;
mod subscribe;
mod webhook;
mod worker;

pub use builder::StudioBuilder;
pub use discover::{DiscoverQuery, DiscoveredVideo, Discovery, PlatformFailure};
pub use plans::PlanAllowance;
pub use report::CostLine;
pub use shared::Studio;
pub use webhook::WebhookOutcome;
pub use worker::TickReport;
