//! Connects a YouTube channel from the command line and keeps its tokens, sealed, in the store.
//!
//! `cargo run -p jilo-examples --example connect_youtube`
//!
//! Needs a Google OAuth client of type "Desktop app" (`YOUTUBE_CLIENT_ID`,
//! `YOUTUBE_CLIENT_SECRET`) and a key to seal tokens with (`JILO_TOKEN_KEY`, 32 random bytes in
//! base64, e.g. `openssl rand -base64 32`). It prints a URL to open; after consent Google
//! redirects to a listener on 127.0.0.1 and the channel is connected. Without those variables
//! it says what to set and stops. Run it again to see the channels kept in `jilo.db` (or
//! `DATABASE_URL`); `--disconnect UC…` revokes one at Google and forgets it.

use std::sync::Arc;
use std::time::Duration;

use jilo::providers::tokens::TokenCipher;
use jilo::providers::youtube::{GoogleOAuth, LoopbackRedirect, YouTubePublisher};
use jilo::store::SqlStore;
use jilo::{ChannelStore, UserId};

#[tokio::main]
async fn main() -> Result<(), jilo::Error> {
    let (oauth, cipher) = match (GoogleOAuth::from_env(), TokenCipher::from_env()) {
        (Ok(oauth), Ok(cipher)) => (oauth, cipher),
        (oauth, cipher) => {
            for e in [oauth.err(), cipher.err()].into_iter().flatten() {
                println!("not configured: {e}");
            }
            println!(
                "set YOUTUBE_CLIENT_ID and YOUTUBE_CLIENT_SECRET (a Desktop app OAuth client) and \
                 JILO_TOKEN_KEY (32 random bytes, base64), then run this again"
            );
            return Ok(());
        }
    };
    let store = Arc::new(SqlStore::open_from_env().await?);
    let youtube = YouTubePublisher::new(oauth, store.clone(), cipher)?;
    let user = UserId::new(std::env::var("JILO_USER").unwrap_or_else(|_| "creator-1".into()));

    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, channel] = args.as_slice() {
        if flag == "--disconnect" {
            youtube.disconnect_channel(&user, channel).await?;
            println!("disconnected {channel}");
            return Ok(());
        }
    }

    let redirect = LoopbackRedirect::bind().await?;
    let pending = youtube.oauth().authorize(&redirect.uri())?;
    println!(
        "open this URL in a browser and allow access:\n\n{}\n",
        pending.url
    );
    let back = redirect.wait(Duration::from_secs(300)).await?;
    let channel = youtube
        .connect_channel(&user, &pending, &back.state, &back.code)
        .await?;
    println!(
        "connected {} ({}), scopes: {}",
        channel.channel_name,
        channel.channel_id,
        channel.scopes.join(" ")
    );
    for kept in store.channels(&user).await? {
        println!(
            "kept: {} ({}), access token valid until {}",
            kept.channel_name, kept.channel_id, kept.access_expires_at
        );
    }
    Ok(())
}
