//! How large a request body each endpoint takes, and which bodies levee
//! reads. The defaults are the API's own limits: 32 MB for the Messages
//! and Token Counting endpoints, 256 MB for Message Batches, 500 MB for
//! Files.
//!
//! levee reads the bodies of the endpoints it charges by their content
//! (messages, count_tokens, chat completions, and any other it does not
//! know), so it holds them in memory. It never reads a batch or a file
//! upload: their bodies are only passed on, and a host may keep them out
//! of memory ([`Route::passes_through`]).

/// The endpoints that have a body limit of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v1/messages`.
    Messages,
    /// `/v1/messages/count_tokens`.
    CountTokens,
    /// `/v1/chat/completions`, the OpenAI-compatible path.
    ChatCompletions,
    /// `/v1/messages/batches` and below.
    Batches,
    /// `/v1/files` and below.
    Files,
    /// Any other path.
    Other,
}

impl Route {
    /// Every route with a key of its own in the config, as the config
    /// names them.
    pub const KEYED: [(Route, &'static str); 5] = [
        (Route::Messages, "messages"),
        (Route::CountTokens, "count_tokens"),
        (Route::ChatCompletions, "chat_completions"),
        (Route::Batches, "batches"),
        (Route::Files, "files"),
    ];

    /// The route of a request `path` (its query ignored).
    pub fn of(path: &str) -> Route {
        let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
        let under = |base: &str| {
            path.strip_prefix(base)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        match path {
            "/v1/messages" => Route::Messages,
            "/v1/messages/count_tokens" => Route::CountTokens,
            "/v1/chat/completions" => Route::ChatCompletions,
            _ if under("/v1/messages/batches") => Route::Batches,
            _ if under("/v1/files") => Route::Files,
            _ => Route::Other,
        }
    }

    /// Whether levee only passes this route's body on, and never reads it:
    /// such a body need not be held in memory.
    pub fn passes_through(self) -> bool {
        matches!(self, Route::Batches | Route::Files)
    }
}

/// The largest body each route takes, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// `/v1/messages`.
    pub messages: usize,
    /// `/v1/messages/count_tokens`.
    pub count_tokens: usize,
    /// `/v1/chat/completions`.
    pub chat_completions: usize,
    /// `/v1/messages/batches`.
    pub batches: usize,
    /// `/v1/files`.
    pub files: usize,
    /// Any other path.
    pub other: usize,
}

/// The API's standard limit (Messages, Token Counting), bytes.
pub const STANDARD: usize = 32 << 20;
/// The API's Message Batches limit, bytes.
pub const BATCHES: usize = 256 << 20;
/// The API's Files limit, bytes.
pub const FILES: usize = 500 << 20;
/// The most any limit may be set to, bytes.
pub const MOST: usize = 1 << 30;

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits::with_standard(STANDARD)
    }
}

impl BodyLimits {
    /// The API's limits, with `standard` for every route that reads its
    /// body (`max_body_bytes`).
    pub fn with_standard(standard: usize) -> Self {
        BodyLimits {
            messages: standard,
            count_tokens: standard,
            chat_completions: standard,
            batches: BATCHES,
            files: FILES,
            other: standard,
        }
    }

    /// The limit of `route`.
    pub fn of(&self, route: Route) -> usize {
        match route {
            Route::Messages => self.messages,
            Route::CountTokens => self.count_tokens,
            Route::ChatCompletions => self.chat_completions,
            Route::Batches => self.batches,
            Route::Files => self.files,
            Route::Other => self.other,
        }
    }

    /// The limit of `route`, to set.
    pub fn of_mut(&mut self, route: Route) -> &mut usize {
        match route {
            Route::Messages => &mut self.messages,
            Route::CountTokens => &mut self.count_tokens,
            Route::ChatCompletions => &mut self.chat_completions,
            Route::Batches => &mut self.batches,
            Route::Files => &mut self.files,
            Route::Other => &mut self.other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_finds_its_route_and_lookalikes_do_not() {
        let cases = [
            ("/v1/messages", Route::Messages),
            ("/v1/messages?beta=true", Route::Messages),
            ("/v1/messages/count_tokens", Route::CountTokens),
            ("/v1/chat/completions", Route::ChatCompletions),
            ("/v1/messages/batches", Route::Batches),
            ("/v1/messages/batches/msgbatch_01/cancel", Route::Batches),
            ("/v1/messages/batchesx", Route::Other),
            ("/v1/files", Route::Files),
            ("/v1/files/file_01", Route::Files),
            ("/v1/filesystem", Route::Other),
            ("/v1/models", Route::Other),
        ];
        for (path, route) in cases {
            assert_eq!(Route::of(path), route, "{path}");
        }
    }

    #[test]
    fn the_defaults_are_the_apis_limits_and_only_batches_and_files_pass_through() {
        let limits = BodyLimits::default();
        assert_eq!(limits.of(Route::Messages), 32 << 20);
        assert_eq!(limits.of(Route::CountTokens), 32 << 20);
        assert_eq!(limits.of(Route::Batches), 256 << 20);
        assert_eq!(limits.of(Route::Files), 500 << 20);
        let through: Vec<_> = Route::KEYED
            .iter()
            .filter(|(r, _)| r.passes_through())
            .map(|(_, name)| *name)
            .collect();
        assert_eq!(through, ["batches", "files"]);
        assert!(!Route::Other.passes_through());
        let lowered = BodyLimits::with_standard(1024);
        assert_eq!(lowered.of(Route::Other), 1024);
        assert_eq!(lowered.of(Route::Batches), 256 << 20);
    }
}
