use async_trait::async_trait;

use crate::error::Result;
use crate::ids::{JobId, Timestamp, UserId};
use crate::publish::{
    ChannelConnection, HeldPublication, Publication, PublicationBegun, PublicationClaim,
    PublicationKey, PublicationOutcome, StatsReading, UploadCheckpoint,
};

/// Channels users connected, with their sealed tokens, one record per user and channel.
///
/// Contract (checked by [`crate::testing::channel_store_suite`]): saving a user's channel
/// again replaces its tokens and name and keeps when it was first connected; users' channels
/// are separate.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait ChannelStore: Send + Sync + std::fmt::Debug {
    /// Keeps a connection, replacing the user's earlier one for the same channel.
    async fn save_channel(&self, channel: &ChannelConnection) -> Result<()>;

    /// The user's connection to a channel.
    async fn channel(&self, user: &UserId, channel_id: &str) -> Result<Option<ChannelConnection>>;

    /// The user's connected channels, by channel id.
    async fn channels(&self, user: &UserId) -> Result<Vec<ChannelConnection>>;

    /// Forgets a connection; whether there was one.
    async fn remove_channel(&self, user: &UserId, channel_id: &str) -> Result<bool>;
}

/// Durable publication records, one per job and channel.
///
/// Contract (checked by [`crate::testing::publication_store_suite`]): `begin` writes a record
/// once (a second `begin` returns the first record untouched, unless it failed: then it starts
/// over with the new metadata); one lease holder at a time; progress and the end are written
/// only by the lease holder ([`crate::Error::LostRace`] otherwise); confirmed bytes never go
/// back within a session.
#[cfg_attr(any(test, feature = "test-utils"), mockall::automock)]
#[async_trait]
pub trait PublicationStore: Send + Sync + std::fmt::Debug {
    /// Writes `publication` if the job has none for its channel, or restarts a failed one
    /// (new metadata, no session, no lease); otherwise returns the record as it is, saying
    /// whether this call wrote it.
    async fn begin_publication(&self, publication: &Publication) -> Result<PublicationBegun>;

    /// Takes the upload lease of an uploading record whose lease is free or lapsed at the
    /// claim's `now`, counting an attempt; `None` when another holder has it or the record is
    /// not uploading.
    async fn claim_publication(&self, claim: &PublicationClaim) -> Result<Option<Publication>>;

    /// Keeps the session and the bytes the platform confirmed, and renews the lease until
    /// the checkpoint's `until`. A new session URI resets the count to the session's.
    async fn save_upload(&self, checkpoint: &UploadCheckpoint) -> Result<()>;

    /// Extends the holder's lease to `until` ([`crate::Error::LostRace`] when the token no
    /// longer holds it).
    async fn renew_publication(&self, held: &HeldPublication, until: Timestamp) -> Result<()>;

    /// Ends the record (published or failed) and frees the lease.
    async fn finish_publication(
        &self,
        held: &HeldPublication,
        outcome: &PublicationOutcome,
    ) -> Result<Publication>;

    /// Adds notes to a record (what did not work after the upload: a thumbnail refused, a
    /// full playlist), whatever its state.
    async fn note_publication(&self, key: &PublicationKey, notes: &[String]) -> Result<()>;

    /// Gives the lease up without ending the record (the upload stopped and will resume).
    async fn release_publication(&self, held: &HeldPublication) -> Result<()>;

    /// The record of a job on a channel.
    async fn publication(&self, key: &PublicationKey) -> Result<Option<Publication>>;

    /// A job's records on every channel.
    async fn publications_of(&self, job: &JobId) -> Result<Vec<Publication>>;

    /// Uploading records whose lease is free or lapsed at `now` (a process died mid-upload),
    /// oldest first.
    async fn stalled_publications(&self, now: Timestamp, limit: u32) -> Result<Vec<Publication>>;

    /// Published records whose statistics were never read or were read before `before`,
    /// least recently read first.
    async fn publications_due_for_stats(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Publication>>;

    /// Keeps a published video's latest statistics.
    async fn record_stats(&self, reading: &StatsReading) -> Result<()>;
}

/// Forwards to the shared store, so an `Arc` of a store is a store.
#[async_trait]
impl<T: ChannelStore + ?Sized> ChannelStore for std::sync::Arc<T> {
    async fn save_channel(&self, channel: &ChannelConnection) -> Result<()> {
        (**self).save_channel(channel).await
    }

    async fn channel(&self, user: &UserId, channel_id: &str) -> Result<Option<ChannelConnection>> {
        (**self).channel(user, channel_id).await
    }

    async fn channels(&self, user: &UserId) -> Result<Vec<ChannelConnection>> {
        (**self).channels(user).await
    }

    async fn remove_channel(&self, user: &UserId, channel_id: &str) -> Result<bool> {
        (**self).remove_channel(user, channel_id).await
    }
}

/// Forwards to the shared store, so an `Arc` of a store is a store.
#[async_trait]
impl<T: PublicationStore + ?Sized> PublicationStore for std::sync::Arc<T> {
    async fn begin_publication(&self, publication: &Publication) -> Result<PublicationBegun> {
        (**self).begin_publication(publication).await
    }

    async fn claim_publication(&self, claim: &PublicationClaim) -> Result<Option<Publication>> {
        (**self).claim_publication(claim).await
    }

    async fn save_upload(&self, checkpoint: &UploadCheckpoint) -> Result<()> {
        (**self).save_upload(checkpoint).await
    }

    async fn renew_publication(&self, held: &HeldPublication, until: Timestamp) -> Result<()> {
        (**self).renew_publication(held, until).await
    }

    async fn finish_publication(
        &self,
        held: &HeldPublication,
        outcome: &PublicationOutcome,
    ) -> Result<Publication> {
        (**self).finish_publication(held, outcome).await
    }

    async fn note_publication(&self, key: &PublicationKey, notes: &[String]) -> Result<()> {
        (**self).note_publication(key, notes).await
    }

    async fn release_publication(&self, held: &HeldPublication) -> Result<()> {
        (**self).release_publication(held).await
    }

    async fn publication(&self, key: &PublicationKey) -> Result<Option<Publication>> {
        (**self).publication(key).await
    }

    async fn publications_of(&self, job: &JobId) -> Result<Vec<Publication>> {
        (**self).publications_of(job).await
    }

    async fn stalled_publications(&self, now: Timestamp, limit: u32) -> Result<Vec<Publication>> {
        (**self).stalled_publications(now, limit).await
    }

    async fn publications_due_for_stats(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Publication>> {
        (**self).publications_due_for_stats(before, limit).await
    }

    async fn record_stats(&self, reading: &StatsReading) -> Result<()> {
        (**self).record_stats(reading).await
    }
}
