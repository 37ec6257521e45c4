//! Test support shared with the root crate's tests: the Google simulator of `jilo-sim`, and a
//! channel connected on it as the publisher would have connected it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub use jilo_sim::google;

/// A channel connected earlier: tokens issued by the simulator, sealed for `user` as the
/// publisher seals them, valid for an hour from `now`.
pub fn connected_channel(
    sim: &google::GoogleSim,
    user: &jilo_core::UserId,
    cipher: &jilo_providers::tokens::TokenCipher,
    now: jilo_core::Timestamp,
) -> jilo_core::ChannelConnection {
    let (access, refresh) = sim.issue_tokens();
    let owner = format!("{user}/{}", google::CHANNEL_ID);
    let seal = |t: String| {
        cipher
            .seal(&secrecy::SecretString::from(t), &owner)
            .unwrap()
            .to_string()
    };
    jilo_core::ChannelConnection {
        user: user.clone(),
        channel_id: google::CHANNEL_ID.to_owned(),
        channel_name: google::CHANNEL_NAME.to_owned(),
        access_token: seal(access),
        access_expires_at: now.plus(std::time::Duration::from_secs(3599)),
        refresh_token: seal(refresh),
        scopes: vec![],
        connected_at: now,
        updated_at: now,
    }
}
