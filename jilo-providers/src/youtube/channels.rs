//! Channel connections: the OAuth code exchanged for tokens sealed per user and channel, the
//! channel the account owns, tokens refreshed before they lapse, and a grant revoked.

use std::time::Duration;

use jilo_core::{ChannelConnection, Error, Result, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::http::{retry_after, transport_error, CallKind, TracedSend};

use super::config::YouTubePublisher;
use super::errors::{protocol, youtube_error, SERVICE};
use super::oauth::{PendingAuthorization, REFRESH_MARGIN};

impl YouTubePublisher {
    fn owner(user: &UserId, channel_id: &str) -> String {
        format!("{user}/{channel_id}")
    }

    /// Finishes a channel connection: exchanges the redirect's code (state checked), reads
    /// the channel the account owns (`channels.list?mine=true`), seals both tokens for that
    /// user and channel, and keeps them. Connecting the same channel again replaces its tokens.
    pub async fn connect_channel(
        &self,
        user: &UserId,
        pending: &PendingAuthorization,
        returned_state: &str,
        code: &str,
    ) -> Result<ChannelConnection> {
        let now = self.clock.now();
        let tokens = self
            .oauth
            .exchange(pending, returned_state, code, now)
            .await?;
        let refresh = tokens
            .refresh_token
            .clone()
            .ok_or_else(|| protocol("the grant has no refresh token"))?;
        // A fresh token refused by the channel lookup (revoked a moment ago, a clock that ran
        // ahead) is refreshed and the lookup tried once more, as an upload does.
        let (tokens, (channel_id, channel_name)) = match self.my_channel(&tokens.access_token).await
        {
            Err(Error::Unauthorized { .. }) => {
                let fresh = self.oauth.refresh(&user.to_string(), &refresh, now).await?;
                let found = self.my_channel(&fresh.access_token).await?;
                (fresh, found)
            }
            found => (tokens, found?),
        };
        let refresh = tokens.refresh_token.as_ref().unwrap_or(&refresh);
        let owner = Self::owner(user, &channel_id);
        let connection = ChannelConnection {
            user: user.clone(),
            channel_id: channel_id.clone(),
            channel_name,
            access_token: self.cipher.seal(&tokens.access_token, &owner)?.to_string(),
            access_expires_at: tokens.expires_at,
            refresh_token: self.cipher.seal(refresh, &owner)?.to_string(),
            scopes: tokens.scopes.clone(),
            connected_at: now,
            updated_at: now,
        };
        self.channels.save_channel(&connection).await?;
        tracing::info!(user = %user, channel = %channel_id, "channel connected");
        Ok(connection)
    }

    /// Revokes a channel's grant at Google and forgets its tokens.
    pub async fn disconnect_channel(&self, user: &UserId, channel_id: &str) -> Result<()> {
        let connection = self.connection(user, channel_id).await?;
        let owner = Self::owner(user, channel_id);
        let refresh = self
            .cipher
            .open(&connection.refresh_token.parse()?, &owner)?;
        self.oauth.revoke(&refresh).await?;
        self.channels.remove_channel(user, channel_id).await?;
        Ok(())
    }

    async fn connection(&self, user: &UserId, channel_id: &str) -> Result<ChannelConnection> {
        self.channels
            .channel(user, channel_id)
            .await?
            .ok_or_else(|| Error::not_found("channel", Self::owner(user, channel_id)))
    }

    /// A valid access token for the user's channel: the kept one while it has more than
    /// [`REFRESH_MARGIN`] left (and `force` is off), else a refreshed one, sealed and kept.
    /// A revoked or expired grant is [`Error::ReconnectRequired`].
    pub async fn access_token(
        &self,
        user: &UserId,
        channel_id: &str,
        force: bool,
    ) -> Result<SecretString> {
        let connection = self.connection(user, channel_id).await?;
        let owner = Self::owner(user, channel_id);
        let now = self.clock.now();
        if !force && connection.access_expires_at > now.plus(REFRESH_MARGIN) {
            return self.cipher.open(&connection.access_token.parse()?, &owner);
        }
        let refresh = self
            .cipher
            .open(&connection.refresh_token.parse()?, &owner)?;
        let tokens = self.oauth.refresh(channel_id, &refresh, now).await?;
        let refresh = tokens.refresh_token.as_ref().unwrap_or(&refresh);
        let updated = ChannelConnection {
            access_token: self.cipher.seal(&tokens.access_token, &owner)?.to_string(),
            access_expires_at: tokens.expires_at,
            refresh_token: self.cipher.seal(refresh, &owner)?.to_string(),
            updated_at: now,
            ..connection
        };
        self.channels.save_channel(&updated).await?;
        tracing::debug!(channel = %channel_id, "access token refreshed");
        Ok(tokens.access_token)
    }

    async fn my_channel(&self, token: &SecretString) -> Result<(String, String)> {
        let url = format!(
            "{}/youtube/v3/channels?part=snippet&mine=true",
            self.api_url
        );
        let body = self.get_json(&url, token).await?;
        let item = body
            .get("items")
            .and_then(|i| i.get(0))
            .ok_or_else(|| Error::NotAllowed {
                reason: "the Google account has no YouTube channel; create one and connect again"
                    .to_owned(),
            })?;
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("channels.list gave a channel without an id"))?;
        let name = item
            .pointer("/snippet/title")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok((id.to_owned(), name.to_owned()))
    }

    pub(super) async fn get_json(&self, url: &str, token: &SecretString) -> Result<Value> {
        let response = self
            .http
            .get(url)
            .bearer_auth(token.expose_secret())
            .timeout(Duration::from_secs(30))
            .traced_send(SERVICE)
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(SERVICE, CallKind::Read, e))?;
        if !(200..300).contains(&status) {
            return Err(youtube_error(status, &text, wait, self.clock.now()));
        }
        serde_json::from_str(&text).map_err(|e| protocol(format!("unreadable answer: {e}")))
    }
}
