//! What an effect learnt from a service, and what the driver does next with it: the words
//! `driver` and `effects` share, below both.

use crate::ids::Timestamp;
use crate::machine::Input;

/// What was learnt with an input, written into the job alongside the transition.
#[derive(Clone, Debug)]
pub(crate) enum Observation {
    Nothing,
    Accepted {
        request_id: String,
        attempt: u32,
        webhook: bool,
    },
    Failure {
        reason: String,
        /// How long the service asked us to wait (a 429's `Retry-After`), if it said.
        retry_after: Option<std::time::Duration>,
    },
    Progress {
        progress: Option<u8>,
        stage: Option<String>,
    },
    /// The provider finished; its URL when it gave one (else storing fetches the result).
    Video {
        video: Option<crate::traits::ProviderVideo>,
    },
    Stored {
        stored: crate::job::StoredVideo,
        video_url: String,
    },
}

/// What to do after an effect that asked a service something.
pub(crate) enum Follow {
    /// Feed this input back into the machine.
    Input(Input, Observation),
    /// Nothing new: look again at the normal interval.
    Reschedule,
    /// Nothing new: look again at this time.
    RescheduleAt(Timestamp),
}
