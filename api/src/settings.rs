//! What the node configures about the HTTP surface: token lifetimes, login
//! and socket limits, body and file sizes. Built from the node's config
//! (`node/src/config`), read by every handler through the app state.

use std::time::Duration;

use crate::body::BodyLimits;

/// Token lifetimes and login limits.
#[derive(Clone, Copy, Debug)]
pub struct ApiSettings {
    pub candidate_token_ttl_s: i64,
    pub proctor_token_ttl_s: i64,
    pub login_max_failures: u32,
    pub login_window_s: i64,
    pub body_limits: BodyLimits,
    /// The largest WebSocket message accepted (bigger closes with 1009).
    pub ws_max_message_bytes: usize,
    /// How long a new socket has to send a valid `hello`.
    pub ws_hello_timeout: Duration,
    /// Frames a socket may send per second; beyond, they are refused.
    pub ws_frames_per_second: u32,
    /// Upload size limit and download caching.
    pub files: FileSettings,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            candidate_token_ttl_s: 12 * 3600,
            proctor_token_ttl_s: 12 * 3600,
            login_max_failures: 10,
            login_window_s: 300,
            body_limits: BodyLimits::default(),
            ws_max_message_bytes: 256 * 1024,
            ws_hello_timeout: Duration::from_secs(5),
            ws_frames_per_second: 100,
            files: FileSettings::default(),
        }
    }
}

/// Upload limit and download caching, from the node's `files.*` config.
#[derive(Clone, Copy, Debug)]
pub struct FileSettings {
    /// The largest file accepted; larger uploads are 413 `file_too_large`.
    pub max_bytes: usize,
    /// `Cache-Control: private, max-age` of downloads.
    pub cache_max_age: Duration,
}

impl Default for FileSettings {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            cache_max_age: Duration::from_secs(86_400),
        }
    }
}
