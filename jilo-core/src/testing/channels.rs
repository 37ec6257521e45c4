//! The [`ChannelStore`] rules, one function each. Each uses random ids, so it runs on a store
//! holding other data. [`channel_store_suite`] runs them all.

use crate::ids::{Timestamp, UserId};
use crate::publish::ChannelConnection;
use crate::traits::ChannelStore;

use super::support::{rules, run_id};

fn connection(user: &UserId, channel: &str, token: &str, at: i64) -> ChannelConnection {
    ChannelConnection {
        user: user.clone(),
        channel_id: channel.to_owned(),
        channel_name: "频道 'one'".to_owned(),
        access_token: format!("v1:k1:nonce:{token}"),
        access_expires_at: Timestamp::from_millis(at + 3_599_000),
        refresh_token: format!("v1:k1:nonce:r-{token}"),
        scopes: vec![
            "https://www.googleapis.com/auth/youtube".to_owned(),
            "https://www.googleapis.com/auth/youtube.upload".to_owned(),
        ],
        connected_at: Timestamp::from_millis(at),
        updated_at: Timestamp::from_millis(at),
    }
}

/// Checks the [`ChannelStore`] contract: a connection reads back as saved; saving the same
/// user and channel again replaces tokens, name and scopes but keeps the first connection
/// time; another user's connection to the same channel is separate; removing says whether
/// there was one. Uses random ids. Panics naming the broken rule.
pub async fn channel_store_suite<S: ChannelStore + ?Sized>(store: &S) {
    rules!(store, "channels":
        a_connection_reads_back_and_a_second_save_replaces_it,
        connections_are_per_user_and_removed_once,
    );
}

fn ok(what: &str, r: crate::Result<()>) {
    if let Err(e) = r {
        panic!("{what} failed: {e}");
    }
}

/// A channel never connected is `None`; a connection reads back as saved; saving the same
/// user and channel again replaces tokens, name and scopes but keeps the first connection
/// time.
pub async fn a_connection_reads_back_and_a_second_save_replaces_it<S: ChannelStore + ?Sized>(
    store: &S,
) {
    let run = run_id();
    let user = UserId::new(format!("{run}-u1"));
    let channel = format!("UC{run}");
    assert!(
        store
            .channel(&user, &channel)
            .await
            .ok()
            .flatten()
            .is_none(),
        "a channel never connected is None"
    );
    let first = connection(&user, &channel, "a", 1_000);
    ok("saving a channel", store.save_channel(&first).await);
    assert_eq!(
        store.channel(&user, &channel).await.ok().flatten(),
        Some(first.clone()),
        "a connection reads back as saved"
    );
    let mut again = connection(&user, &channel, "b", 9_000);
    again.channel_name = "renamed".to_owned();
    again.scopes = vec!["https://www.googleapis.com/auth/youtube.upload".to_owned()];
    ok("saving a channel again", store.save_channel(&again).await);
    let read = store
        .channel(&user, &channel)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the channel is gone after a second save"));
    assert_eq!(read.access_token, again.access_token, "tokens are replaced");
    assert_eq!(read.refresh_token, again.refresh_token);
    assert_eq!(read.channel_name, "renamed");
    assert_eq!(read.scopes, again.scopes);
    assert_eq!(read.access_expires_at, again.access_expires_at);
    assert_eq!(
        read.connected_at, first.connected_at,
        "the first connection time is kept"
    );
    assert_eq!(read.updated_at, again.updated_at);
}

/// Another user's connection to the same channel is separate; a user's channels list by id
/// without other users'; removing says whether there was one and keeps another user's.
pub async fn connections_are_per_user_and_removed_once<S: ChannelStore + ?Sized>(store: &S) {
    let run = run_id();
    let user = UserId::new(format!("{run}-u1"));
    let other = UserId::new(format!("{run}-u2"));
    let channel = format!("UC{run}");
    ok(
        "saving a channel",
        store
            .save_channel(&connection(&user, &channel, "b", 9_000))
            .await,
    );
    let theirs = connection(&other, &channel, "c", 2_000);
    ok(
        "saving another user's channel",
        store.save_channel(&theirs).await,
    );
    let second = connection(&user, &format!("UC{run}-2"), "d", 3_000);
    ok("saving a second channel", store.save_channel(&second).await);
    let mine = store
        .channels(&user)
        .await
        .unwrap_or_else(|e| panic!("listing channels failed: {e}"));
    assert_eq!(
        mine.iter()
            .map(|c| c.channel_id.as_str())
            .collect::<Vec<_>>(),
        vec![channel.as_str(), second.channel_id.as_str()],
        "a user's channels, by id, without other users'"
    );
    assert_eq!(
        store.channel(&other, &channel).await.ok().flatten(),
        Some(theirs),
        "users' connections are separate"
    );
    assert_eq!(store.remove_channel(&user, &channel).await.ok(), Some(true));
    assert_eq!(
        store.remove_channel(&user, &channel).await.ok(),
        Some(false),
        "removing twice finds nothing"
    );
    assert!(store
        .channel(&user, &channel)
        .await
        .ok()
        .flatten()
        .is_none());
    assert!(
        store
            .channel(&other, &channel)
            .await
            .ok()
            .flatten()
            .is_some(),
        "removing one user's connection keeps another's"
    );
}
